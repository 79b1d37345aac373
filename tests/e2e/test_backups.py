"""Backups in a real browser: an operator clicks "Back up now" on a VM page and watches the
run page reach "Succeeded" with the progress bar at 100 %, without reloading; an
administrator adds a data store and downloads its key file once.

The worker: the page queues the task on django-q2's ORM broker (a row in the shared test
database). Instead of starting `manage.py qcluster` (two more processes, a few seconds of
start-up and polling on a 2-core machine), the test takes the queued task from the broker
and runs it in a thread, as a cluster worker would: the same function, the same arguments,
the progress published from another process than the web server, as in production.
"""
import threading

import pytest
from django.db import connection
from django.utils.module_loading import import_string
from django_q.models import OrmQ

from backups.models import BackupRun, DataStore
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from tests.fixtures.users import TEST_PASSWORD, make_user
from xenpools.connection import PoolConnection
from xenpools.models import VM
from xenpools.registration import register_pool

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PASSPHRASE = "correct horse battery staple"


class BrokerWorker:
    """Runs the tasks queued on the ORM broker in a background thread, like a qcluster worker."""

    def __init__(self):
        self.results, self.errors = [], []
        self.thread = None

    def run_queued(self):
        def work():
            try:
                for queued in OrmQ.objects.order_by("id"):
                    task = queued.task
                    OrmQ.objects.filter(pk=queued.pk).delete()  # acknowledged, as the cluster does
                    self.results.append(import_string(task["func"])(*task["args"], **task["kwargs"]))
            except Exception as exc:  # reported by the test, not lost in the thread
                self.errors.append(exc)
            finally:
                connection.close()
        self.thread = threading.Thread(target=work, name="test-broker-worker", daemon=True)
        self.thread.start()

    def join(self):
        if self.thread:
            self.thread.join(timeout=120)
        assert not self.errors, self.errors


@pytest.fixture
def lab(asgi_server, sim, tmp_path):
    make_user("oscar-operator", Role.OPERATOR, first_name="Oscar", last_name="Operator")
    make_user("alice-admin", Role.ADMINISTRATOR, first_name="Alice", last_name="Admin")
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)
    pool = register_pool("Lab pool", sim.url, "root", sim.password, probe, sync=True)
    store = create_store(name="nas-01", path=str(tmp_path / "nas-01"), passphrase=PASSPHRASE)
    return pool, store


def test_an_operator_backs_up_a_vm_and_watches_it_succeed_live(asgi_server, lab, page, screenshot):
    pool, store = lab
    vm = VM.objects.get(pool=pool, name="test-vm-1", is_snapshot=False)
    asgi_server.sign_in(page, "oscar-operator")
    page.goto(asgi_server.url + vm.get_absolute_url())
    page.get_by_role("heading", name="Back up now").wait_for()
    page.get_by_text("Not possible here").wait_for()   # a Linux guest cannot be quiesced
    page.get_by_label("Data store").select_option(label="nas-01")
    page.locator('input[name="method"][value="normal"]').check()
    screenshot(page, "backup-vm-page")

    worker = BrokerWorker()
    page.get_by_role("button", name="Back up now").click()
    page.wait_for_url("**/backups/runs/*/")
    run = BackupRun.objects.get()
    page.wait_for_selector('[data-live-state="live"]')
    page.evaluate("window.__notReloaded = true")
    assert page.locator("[data-run-status]").inner_text() == "Queued"
    screenshot(page, "backup-run-queued")

    worker.run_queued()
    page.locator("[data-run-status]", has_text="Succeeded").wait_for(timeout=60_000)
    worker.join()
    card = page.locator(f'[data-vm-backup-id="{run.vm_backups.get().pk}"]')
    card.locator('[role=progressbar][aria-valuenow="100"]').wait_for()
    assert page.evaluate("window.__notReloaded") is True
    page.wait_for_function("(el) => el.offsetWidth >= el.parentElement.offsetWidth - 1",
                           arg=card.locator(".progress-bar").element_handle())  # the bar's width transition
    vm_backup = run.vm_backups.get()
    assert vm_backup.status == "success" and vm_backup.restore_point is not None
    assert card.locator('[data-field="phase"]').inner_text() == "Done"
    assert card.locator('[data-field="rate"]').inner_text().endswith("MB/s")
    assert page.locator("[data-cancel-form]").count() == 0
    screenshot(page, "backup-run-succeeded")

    page.get_by_role("link", name="All runs").click()
    page.locator(f'tr[data-run-id="{run.pk}"]').get_by_text("Succeeded").wait_for()
    screenshot(page, "backup-runs")
    page.get_by_role("link", name="Restore points").first.click()
    page.locator("[data-point-table]").get_by_text("test-vm-1").wait_for()
    screenshot(page, "backup-restore-points")
    page.goto(asgi_server.url + vm.get_absolute_url())
    page.locator("[data-restore-points]").wait_for()
    screenshot(page, "backup-vm-with-restore-point")
    page.goto(asgi_server.url + store.get_absolute_url())
    page.get_by_role("heading", name="Restore points per VM").wait_for()
    screenshot(page, "backup-store-detail-operator")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    assert page.locator('[data-field="vms_protected"]').inner_text() == "1"
    assert page.locator('[data-field="restore_points"]').inner_text() == "1"
    screenshot(page, "backup-dashboard-after-backup")


def test_an_administrator_adds_a_data_store_and_downloads_its_key_once(asgi_server, page, tmp_path, screenshot):
    make_user("alice-admin", Role.ADMINISTRATOR, first_name="Alice", last_name="Admin")
    asgi_server.sign_in(page, "alice-admin")
    page.goto(asgi_server.url + "/backups/stores/")
    screenshot(page, "backup-stores-empty")
    page.get_by_role("link", name="Add data store").first.click()
    page.get_by_label("Name").fill("offsite")
    page.get_by_role("textbox", name="Directory").fill(str(tmp_path / "offsite"))
    page.get_by_label("Passphrase", exact=True).fill("short")
    assert "Too short" in page.locator("[data-strength]").inner_text()
    page.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    page.get_by_label("Passphrase again").fill(PASSPHRASE + "x")
    page.get_by_role("button", name="Create data store").click()
    page.get_by_text("The two passphrases differ").wait_for()
    screenshot(page, "backup-store-add-error")

    page.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    page.get_by_label("Passphrase again").fill(PASSPHRASE)
    page.get_by_role("button", name="Create data store").click()
    page.get_by_role("heading", name="Key file").wait_for()
    store = DataStore.objects.get(name="offsite")
    page.get_by_label("Your password").fill(TEST_PASSWORD)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download key file").click()
    assert download.value.suggested_filename == "sesamweb-offsite.key.json"
    page.goto(asgi_server.url + store.get_absolute_url())
    page.get_by_role("button", name="Export again").wait_for()
    assert page.locator('[data-key-state="exported"]').is_visible()
    screenshot(page, "backup-store-detail-admin")
    page.goto(asgi_server.url + "/backups/stores/")
    screenshot(page, "backup-stores")
