"""The run page says why a queued VM waits for a stream, and follows it live: the text comes
from the worker (here: the engine's own show_waiting, called in this process, another process
than the web server) and changes without a reload."""
import pytest

from backups.choices import BackupMethod, RunStatus, Trigger
from backups.engine.slots import show_waiting
from backups.models import BackupRun, VmBackup
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from tests.fixtures.users import make_user
from xenpools.models import Pool

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_run_page_shows_live_why_a_vm_waits(asgi_server, page, screenshot, tmp_path):
    make_user("oscar-operator", Role.OPERATOR)
    pool = Pool.objects.create(name="Lab pool", address="127.0.0.1")
    store = create_store(name="nas-01", path=str(tmp_path / "nas-01"), passphrase=None, encrypted=False)
    run = BackupRun.objects.create(trigger=Trigger.MANUAL, status=RunStatus.RUNNING)
    waiting = VmBackup.objects.create(run=run, pool=pool, vm_uuid="0" * 36, vm_name="web-01", store=store,
                                      method=BackupMethod.NORMAL,
                                      waiting="waiting for a stream (host xcp-host-2: 2 of 2 busy)",
                                      waiting_scope="host:h2")
    VmBackup.objects.create(run=run, pool=pool, vm_uuid="1" * 36, vm_name="db-01", store=store,
                            method=BackupMethod.NORMAL, status=RunStatus.RUNNING)
    asgi_server.sign_in(page, "oscar-operator")
    page.goto(asgi_server.url + run.get_absolute_url())
    shown = page.locator(f'[data-vm-backup-id="{waiting.pk}"] [data-field="waiting"]')
    assert shown.inner_text() == "Waiting for a stream (host xcp-host-2: 2 of 2 busy)"
    screenshot(page, "run-vm-waiting-for-a-stream")

    page.wait_for_function("() => document.querySelector('[data-live-state]')?.dataset.liveState === 'live'",
                           timeout=30000)
    show_waiting(waiting, "waiting for a stream (data store nas-01: 2 of 2 busy)", f"store:{store.pk}")
    page.wait_for_function(
        f"""() => document.querySelector('[data-vm-backup-id="{waiting.pk}"] [data-field="waiting"]')
                 .textContent.includes('data store nas-01')""", timeout=30000)
