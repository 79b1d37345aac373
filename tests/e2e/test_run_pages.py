"""Run pages in a real browser on a 1280 x 800 screen: the runs table stays inside its card
(the page never scrolls sideways) and shows a failed run's reason; the pages of a running, a
failed and a succeeded backup and of a restore say what happened, with the same stat cards."""
from datetime import timedelta

import pytest
from django.utils import timezone

from backups.choices import BackupKind, BackupMethod, BackupPhase, RunStatus
from backups.models import BackupJob, BackupRun, RestoreRun, VmBackup
from backups.models_restore import RestorePhase
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from tests.fixtures.users import make_user
from xenpools.models import VM, Pool

pytestmark = [pytest.mark.e2e]
REASON = ("the pool refused: SR_BACKEND_FAILURE_44 There is insufficient space on the storage repository "
          "Local storage of xcp-ng-host-with-a-long-name-01")


def page_width(page):
    return page.evaluate("document.documentElement.scrollWidth")


@pytest.fixture
def runs(tmp_path):
    store = create_store(name="nas-backups-primary", path=str(tmp_path / "store"), passphrase="correct horse battery")
    pool = Pool.objects.create(name="production-pool-east", address="127.0.0.1", uuid="p", product_version="8.2.1")
    vm = VM.objects.create(pool=pool, uuid="11111111-1111-1111-1111-111111111111", ref="OpaqueRef:1",
                           name="accounting-database-server-01", power_state="Running")
    job = BackupJob.objects.create(name="nightly-production-databases", store=store)
    now = timezone.now()

    def a_run(status, phase, **fields):
        run = BackupRun.objects.create(job=job, status=status, started_at=now - timedelta(minutes=3),
                                       finished_at=None if status == RunStatus.RUNNING else now)
        VmBackup.objects.create(run=run, vm=vm, pool=pool, vm_uuid=vm.uuid, vm_name=vm.name, store=store,
                                method=BackupMethod.NORMAL, status=status, phase=phase,
                                started_at=now - timedelta(minutes=3),
                                finished_at=None if status == RunStatus.RUNNING else now, **fields)
        return run
    numbers = dict(total_bytes=20_000_000_000, bytes_read=12_000_000_000, bytes_processed=20_000_000_000,
                   bytes_new=3_000_000_000, bytes_stored=1_500_000_000)
    succeeded = a_run(RunStatus.SUCCESS, BackupPhase.DONE, kind=BackupKind.FULL, **numbers)
    failed = a_run(RunStatus.FAILED, BackupPhase.STREAMING, kind=BackupKind.INCREMENTAL, error=REASON,
                   total_bytes=20_000_000_000, bytes_read=4_000_000_000, bytes_processed=6_000_000_000)
    running = a_run(RunStatus.RUNNING, BackupPhase.STREAMING, kind=BackupKind.FULL, total_bytes=20_000_000_000,
                    bytes_read=5_000_000_000, bytes_processed=8_000_000_000, bytes_new=2_000_000_000,
                    bytes_stored=900_000_000)
    restore = RestoreRun.objects.create(store=store, store_point_id=f"{vm.uuid}/1", source_vm_name=vm.name,
                                        source_vm_uuid=vm.uuid, target_pool=pool, status=RunStatus.SUCCESS,
                                        phase=RestorePhase.DONE, bytes_total=20_000_000_000,
                                        bytes_done=20_000_000_000, started_at=now - timedelta(minutes=2),
                                        finished_at=now)
    make_user("audrey", Role.AUDITOR)
    return {"succeeded": succeeded, "failed": failed, "running": running, "restore": restore}


def test_the_runs_table_fits_a_1280_screen_and_shows_why_a_run_failed(asgi_server, page, screenshot, runs):
    page.set_viewport_size({"width": 1280, "height": 800})
    asgi_server.sign_in(page, "audrey")
    page.goto(asgi_server.url + "/backups/")
    table = page.locator("[data-run-table]")
    table.wait_for()
    assert page_width(page) <= 1280
    card = page.locator("[data-runs-live]").bounding_box()
    assert card["x"] + card["width"] <= 1280
    wrap = page.locator("[data-runs-live] .table-wrap")
    screenshot(page, "run-list-1280")
    assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth"), wrap.evaluate("el => [el.scrollWidth, el.clientWidth]")
    row = page.locator(f'[data-run-table] tr[data-run-id="{runs["failed"].pk}"]')
    assert "SR_BACKEND_FAILURE_44" in row.locator('[data-field="reason"]').inner_text()
    screenshot(page, "run-list-1280")


@pytest.mark.parametrize("which,expected", [
    ("running", "Streaming disks"),
    ("failed", "Failed while streaming disks"),
    ("succeeded", "Done"),
])
def test_a_run_page_says_what_happened(asgi_server, page, screenshot, runs, which, expected):
    page.set_viewport_size({"width": 1280, "height": 800})
    asgi_server.sign_in(page, "audrey")
    page.goto(asgi_server.url + runs[which].get_absolute_url())
    card = page.locator(".vm-backup").first
    card.wait_for()
    assert card.locator('[data-field="phase"]').inner_text() == expected
    text = page.locator("main").inner_text()
    assert "waiting for a worker" not in text and "kind decided when it starts" not in text
    assert card.locator(".figure-label").all_inner_texts() == [
        "SPEED", "DISKS COVERED", "READ FROM THE POOL", "NEW DATA", "WRITTEN TO THE STORE", "DURATION"]
    if which == "failed":
        assert REASON in card.locator('[data-field="error"]').inner_text()
    assert page_width(page) <= 1280
    screenshot(page, f"run-{which}-1280")


def test_a_restore_page_shows_the_same_stat_cards(asgi_server, page, screenshot, runs):
    page.set_viewport_size({"width": 1280, "height": 800})
    asgi_server.sign_in(page, "audrey")
    page.goto(asgi_server.url + runs["restore"].get_absolute_url())
    figures = page.locator("[data-run-figures]")
    figures.wait_for()
    assert figures.locator(".figure-label").all_inner_texts() == ["SPEED", "DISKS COVERED", "DURATION"]
    assert "MB/s on average" in figures.locator('[data-field="rate"]').inner_text()
    assert page.locator("[data-run-field=phase_label]").inner_text() == "Done"
    screenshot(page, "restore-run-1280")


@pytest.mark.slow       # a real backup through the simulator first
def test_the_restore_point_page_restores_a_disk_to_an_sr(asgi_server, sim, tmp_path, page, screenshot):
    from backups.choices import Trigger
    from backups.services import request_backup, run_in_this_process
    from xenpools.connection import PoolConnection
    from xenpools.registration import register_pool

    make_user("oscar", Role.OPERATOR)
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)
    pool = register_pool("lab", sim.url, "root", sim.password, probe, sync=True)
    store = create_store(name="local", path=str(tmp_path / "points"), passphrase="correct horse battery staple")
    vm = VM.objects.get(pool=pool, name="test-vm-2", is_snapshot=False)
    run = run_in_this_process(request_backup(vm=vm, store=store, method=BackupMethod.NORMAL, trigger=Trigger.CLI))
    point = run.vm_backups.get().restore_point
    page.set_viewport_size({"width": 1280, "height": 800})
    asgi_server.sign_in(page, "oscar")

    page.goto(asgi_server.url + "/backups/restore-points/")
    page.get_by_role("link", name=point.taken_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")).click()
    row = page.locator('[data-disk="vbd0"]')
    row.wait_for()
    assert row.get_by_role("link", name="Raw").is_visible() and row.get_by_role("link", name="VHD").is_visible()
    assert page_width(page) <= 1280
    screenshot(page, "restore-point-1280")
    sr = pool.srs.get(name="Shared NFS storage")
    row.get_by_label("SR for").select_option(str(sr.pk))
    row.get_by_role("button", name="Restore disk").click()
    page.wait_for_url("**/backups/restore/runs/*/")
    restore = RestoreRun.objects.get()
    assert restore.kind == "disk" and restore.status == RunStatus.QUEUED
    assert page.locator("[data-queued-message]").is_visible()      # queued: nothing has started it
    screenshot(page, "restore-disk-queued-1280")


def test_the_store_page_shows_a_verify_live(asgi_server, page, screenshot, tmp_path):
    from backups.tasks import verify_store_task
    from tests.backups.test_run_pages import three_backups

    store = create_store(name="nas", path=str(tmp_path / "live-store"), passphrase="correct horse battery")
    three_backups(store)
    make_user("oscar", Role.OPERATOR)
    page.set_viewport_size({"width": 1280, "height": 800})
    asgi_server.sign_in(page, "oscar")
    page.goto(asgi_server.url + store.get_absolute_url())
    page.wait_for_function("window.Live && Live.state === 'live'")
    panel = page.locator("[data-store-task]")
    assert panel.is_hidden()

    result = verify_store_task(store.pk)        # as a worker would, in another process

    panel.locator('[data-field="state"]:has-text("Finished")').wait_for()
    assert panel.locator('[data-field="text"]').inner_text() == result
    assert panel.locator("[data-progress]").get_attribute("aria-valuenow") == "100"
    screenshot(page, "store-verify-live-1280")
