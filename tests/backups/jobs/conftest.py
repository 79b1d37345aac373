"""Job test helpers: a job on the simulator pool, and a way to run what the job queued."""
import pytest

from backups.jobs.choices import SelectionMode
from backups.models import BackupJob


@pytest.fixture
def make_job(store):
    def make(name="nightly", **fields):
        fields.setdefault("selection", SelectionMode.RULE)
        return BackupJob.objects.create(name=name, store=store, **fields)
    return make


@pytest.fixture
def run_queued_tasks(monkeypatch):
    """Run the VM tasks a job dispatches in this process, as a worker would, in order."""
    from backups.devices import routing
    from backups.tasks import run_vm_backup_task

    queue = []
    monkeypatch.setattr(routing, "async_task", lambda func, *args, **kwargs: queue.append(args) or "task")

    def drain():
        done = 0
        while queue:
            (pk,) = queue.pop(0)
            run_vm_backup_task(pk)
            done += 1
        return done
    return drain
