"""The audit review in a real browser: an auditor filters the log by user and outcome,
exports the filtered view as CSV and JSON (downloads checked), follows an object's link,
pages back through the log and checks the chain."""
import csv
import io
import json

import pytest

from backups.models import DataStore
from sesamweb.accounts.roles import Role
from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.log import record_event
from tests.fixtures.users import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def seed_log(admin):
    store = DataStore.objects.create(name="nas-offsite", path="/srv/nas-offsite")
    record_event(AuditAction.CREATE, target=store, actor=admin, source="10.0.0.5",
                 after={"name": "nas-offsite"}, message="data store created at /srv/nas-offsite")
    for attempt in range(3):
        record_event(AuditAction.LOGIN_FAILED, actor="mallory", source="203.0.113.9", outcome=AuditOutcome.DENIED,
                     message=f"Failed sign-in as \"mallory\" (attempt {attempt + 1})")
    for n in range(60):  # more than one page
        record_event(AuditAction.UPDATE, target_type="xenpools.pool", target_id="1", target_repr="lab pool",
                     actor=admin, source="10.0.0.5", before={"n": n}, after={"n": n + 1})
    return store


def test_an_auditor_filters_exports_and_pages_the_audit_log(asgi_server, page, screenshot):
    admin = make_user("ada-admin", Role.ADMINISTRATOR)
    make_user("otto-auditor", Role.AUDITOR)
    store = seed_log(admin)
    asgi_server.sign_in(page, "otto-auditor")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_role("heading", name="Audit log", level=1).wait_for()
    assert page.locator("[data-count]").inner_text().startswith("Events #")
    screenshot(page, "audit-log")

    page.get_by_label("User").fill("mallory")
    page.get_by_label("Outcome").select_option("denied")
    page.get_by_label("From").fill("2000-01-01")
    page.get_by_role("button", name="Filter").click()
    page.get_by_text("3 matching events").wait_for()
    rows = page.locator("table.table-audit tbody tr")
    assert rows.count() == 3 and all("Failed sign-in" in rows.nth(i).inner_text() for i in range(3))
    screenshot(page, "audit-log-filtered")

    with page.expect_download() as download:
        page.locator('[data-export="csv"]').click()
    assert download.value.suggested_filename.endswith(".csv")
    exported = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert [row["user"] for row in exported] == ["mallory"] * 3
    assert {row["outcome"] for row in exported} == {"denied"}
    with page.expect_download() as download:
        page.locator('[data-export="json"]').click()
    assert download.value.suggested_filename.endswith(".json")
    exported = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert [row["source"] for row in exported] == ["203.0.113.9"] * 3

    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Text").fill("created at /srv")
    page.get_by_role("button", name="Filter").click()
    page.get_by_text("1 matching event").wait_for()
    cell = page.locator("table.table-audit tbody tr").first.locator("td").nth(5)
    assert cell.inner_text().split() == ["Data", "store", "nas-offsite"]   # a kind people read, not backups.datastore
    cell.get_by_role("link", name="nas-offsite").click()
    page.wait_for_url(f"**{store.get_absolute_url()}")

    page.goto(asgi_server.url + "/audit/")
    page.get_by_role("link", name="Older").click()
    page.get_by_role("link", name="Newer").wait_for()
    assert page.locator("table.table-audit tbody tr").count() > 0
    page.get_by_role("button", name="Verify chain").click()
    page.get_by_text("Audit chain intact").wait_for()
    screenshot(page, "audit-log-verified")
