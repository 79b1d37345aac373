"""The restore wizard in a real browser, against the simulator: every step with one of its
checks failing first, then a restore that runs to success on the live progress page.

The restore itself runs in a thread of this test process (run_restore, the very function the
django-q worker task calls), not in a worker cluster: a qcluster would be one more process
polling the shared SQLite file, slower to start and stop, and would add nothing the wizard
is responsible for. Its progress reaches the browser the normal way (published events ->
the server's live relay -> websocket)."""
import threading

import pytest
from django.db import close_old_connections

from backups.choices import BackupMethod, RunStatus, Trigger, VerifyState
from backups.models import RestorePoint, RestoreRun
from backups.restore.plan import run_restore
from backups.services import request_backup, run_in_this_process
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from tests.fixtures.users import make_user
from xenpools.connection import PoolConnection
from xenpools.inventory import sync_pool
from xenpools.models import VM, StorageRepository
from xenpools.registration import register_pool

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VM_NAME = "test-vm-2"


def back_up(vm, store):
    run = run_in_this_process(request_backup(vm=vm, store=store, method=BackupMethod.NORMAL, trigger=Trigger.CLI))
    vm_backup = run.vm_backups.get()
    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    return vm_backup.restore_point


def run_in_background(run_pk):
    def target():
        try:
            run_restore(run_pk)
        finally:
            close_old_connections()
    thread = threading.Thread(target=target, name=f"restore-{run_pk}", daemon=True)
    thread.start()
    return thread


def test_an_operator_restores_a_vm_through_every_step_of_the_wizard(asgi_server, sim, tmp_path, page, screenshot):
    make_user("oscar", Role.OPERATOR, first_name="Oscar")
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)
    pool = register_pool("lab", sim.url, "root", sim.password, probe, sync=True)
    store = create_store(name="local", path=str(tmp_path / "store"), passphrase="correct horse battery staple")
    vm = VM.objects.get(pool=pool, name=VM_NAME, is_snapshot=False)
    damaged = back_up(vm, store)
    RestorePoint.objects.filter(pk=damaged.pk).update(verify_state=VerifyState.DAMAGED)  # as verify marks it
    good = back_up(vm, store)
    gone = VM.objects.get(pool=pool, name="test-vm-3", is_snapshot=False)
    back_up(gone, store)
    sim.control.delete_vm(vm=gone.uuid)
    sync_pool(pool)

    asgi_server.sign_in(page, "oscar")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Restore").click()

    # 1. VM: nothing chosen, then search and choose.
    page.get_by_role("heading", name="1. Which virtual machine do you want to restore?").wait_for()
    deleted_row = page.locator("tr", has=page.get_by_label("test-vm-3", exact=True))
    assert "Deleted from pool" in deleted_row.inner_text() and "lab" in deleted_row.inner_text()
    assert page.locator('[aria-current="step"]').inner_text().endswith("Virtual machine")
    screenshot(page, "restore-1-vm")
    page.get_by_role("button", name="Next: choose a restore point").click()
    page.get_by_text("Choose the virtual machine to restore.").wait_for()
    screenshot(page, "restore-1-vm-error")
    page.get_by_label("Search by VM name or UUID").fill(VM_NAME)
    page.get_by_role("button", name="Search").click()
    page.get_by_label(VM_NAME, exact=True).check()
    page.get_by_role("button", name="Next: choose a restore point").click()

    # 2. Restore point: the damaged one is refused.
    page.get_by_role("heading", name=f"2. Which restore point of {VM_NAME}?").wait_for()
    page.locator("a.calendar-day.has-points").first.click()
    screenshot(page, "restore-2-point")
    page.locator(f'input[name="point"][value="{damaged.pk}"]').check()
    page.get_by_role("button", name="Next: choose the target").click()
    page.locator("#id_point_error").get_by_text("is damaged").wait_for()
    screenshot(page, "restore-2-point-error")
    page.locator(f'input[name="point"][value="{good.pk}"]').check()
    page.get_by_role("button", name="Next: choose the target").click()

    # 3. Target: a full SR is refused, the shared SR is fine.
    page.get_by_role("heading", name="3. Where should the VM go?").wait_for()
    local = StorageRepository.objects.get(pool=pool, name="Local storage on xcp-host-1")
    shared = StorageRepository.objects.get(pool=pool, name="Shared NFS storage")
    sim.control.fill_sr(local.uuid, 0)
    sync_pool(pool)
    page.reload()
    disk_select = page.get_by_label("Storage for disk 0", exact=False)
    disk_select.select_option(str(local.pk))
    assert page.locator(f'tr[data-sr="{local.pk}"] [data-short-badge]').is_visible()   # the script's live check
    page.get_by_role("button", name="Next: identity and start").click()
    page.locator("#id_sr_vbd0_error").wait_for()
    assert "free" in page.locator("#id_sr_vbd0_error").inner_text()
    assert page.get_by_label("Storage for disk 0", exact=False).get_attribute("aria-invalid") == "true"
    screenshot(page, "restore-3-target-error")
    page.get_by_label("Storage for disk 0", exact=False).select_option(str(shared.pk))
    screenshot(page, "restore-3-target")
    page.set_viewport_size({"width": 390, "height": 844})     # a phone: the steps stack up
    page.wait_for_timeout(300)     # the navigation slides away
    screenshot(page, "restore-3-target-narrow")
    page.set_viewport_size({"width": 1366, "height": 860})
    page.get_by_role("button", name="Next: identity and start").click()

    # 4. Identity and start: keeping the identity next to the original is refused.
    page.get_by_role("heading", name="4. Identity and start").wait_for()
    assert page.locator("[data-replace-box]").is_hidden()
    page.get_by_label("Keep the original identity").check()
    assert page.locator("[data-replace-box]").is_visible()
    page.get_by_role("button", name="Next: review").click()
    page.locator("#id_identity_error").get_by_text("still exists").wait_for()
    screenshot(page, "restore-4-options-error")
    page.get_by_label("New identity").check()
    name = page.get_by_label("Name of the restored VM")
    assert name.input_value().startswith(f"{VM_NAME} (restored ")
    name.fill(f"{VM_NAME} restored")
    screenshot(page, "restore-4-options")
    page.get_by_role("button", name="Next: review").click()

    # 5. Review: a VM takes the name meanwhile; the restore is refused until it is changed.
    page.get_by_role("heading", name="5. Review and start").wait_for()
    assert page.locator('[aria-current="step"]').inner_text().endswith("Review")
    screenshot(page, "restore-5-review")
    sim.control.create_vm(f"{VM_NAME} restored", [8 << 20])
    sync_pool(pool)
    page.get_by_role("button", name="Start restore").click()
    page.get_by_text("The restore was not started.").wait_for()
    assert "already exists" in page.locator("#review-problems").inner_text()
    screenshot(page, "restore-5-review-error")
    page.locator("#review-problems").get_by_role("link", name="Change in step 4").click()
    page.get_by_label("Name of the restored VM").fill(f"{VM_NAME} restored twice")
    page.get_by_role("button", name="Next: review").click()
    page.get_by_role("button", name="Start restore").click()

    # The progress page follows the run live.
    page.get_by_role("heading", name=f"Restore of {VM_NAME}").wait_for()
    run = RestoreRun.objects.get()
    assert page.url.endswith(f"/backups/restore/runs/{run.pk}/")
    assert run.plan["name"] == f"{VM_NAME} restored twice" and run.plan["sr_by_disk"]["vbd0"] == shared.uuid
    page.wait_for_selector('[data-live-state="live"]')
    screenshot(page, "restore-6-progress-queued")
    sim.control.rate_limit(1 << 20)      # a few seconds of transfer: time to watch the bar move
    thread = run_in_background(run.pk)
    page.wait_for_function("""() => {
        const bar = document.getElementById("restore-progress");
        const value = Number(bar.getAttribute("aria-valuenow"));
        return value > 0 && value < 100 && document.querySelector('[data-run-field="phase_label"]').textContent === "Streaming disks";
    }""", timeout=30_000)
    page.wait_for_timeout(450)     # the bar's width transition, for the screenshot
    screenshot(page, "restore-6-progress-running")
    page.get_by_text("Restore finished.").wait_for(timeout=60_000)
    thread.join(timeout=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS, run.error
    assert page.locator("#restore-progress").get_attribute("aria-valuenow") == "100"
    page.wait_for_timeout(500)     # the bar's width transition, for the screenshot
    restored = VM.objects.get(pool=pool, uuid=run.restored_vm_uuid)
    assert restored.name == f"{VM_NAME} restored twice"
    link = page.get_by_role("link", name=f"Open {restored.name}")
    assert link.get_attribute("href") == restored.get_absolute_url()
    screenshot(page, "restore-6-progress-done")
