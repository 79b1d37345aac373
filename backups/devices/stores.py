"""Which device server owns a data store, and what it is doing with them."""
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event

from ..choices import RunStatus
from .models import DeviceServer
from .sealing import share_store_secrets


class AssignmentError(ValueError):
    """The store cannot change hands now; the message says why."""


@transaction.atomic
def assign_store(store, server: DeviceServer | None, *, user=None):
    """Give a data store to a device server (None: back to the console's own workers). Its
    secrets are sealed for the new owner and dropped for the old one; its maintenance
    schedules follow it (schedules.follow_store_cluster)."""
    from ..models import DataStore, VmBackup

    if server is not None and server.is_revoked:
        raise AssignmentError(f"device server {server.name} was revoked")
    busy = VmBackup.objects.filter(store=store, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).count()
    if busy:
        raise AssignmentError(f"{busy} backup(s) to data store {store.name} are queued or running; "
                              "move it once they are done")
    before = store.device_server.name if store.device_server_id else "the console's workers"
    store = DataStore.objects.select_for_update().get(pk=store.pk)
    store.device_server = server
    store.save()                      # post_save moves its maintenance rows to the new cluster
    sealed = share_store_secrets(store)
    after = server.name if server is not None else "the console's workers"
    record_event(AuditAction.UPDATE, target=store, actor=user, before={"device_server": before},
                 after={"device_server": after},
                 message=f"data store {store.name} moved from {before} to {after}"
                         + (f"; {sealed} secret(s) sealed for {after}" if sealed else ""))
    return store


@dataclass
class Activity:
    running: int
    bytes_per_second: float
    queued: int


def activity(server: DeviceServer, now=None) -> Activity:
    """Running streams and their combined throughput (bytes covered per second of each running
    backup, summed), and VM backups queued for the server's stores."""
    from ..models import VmBackup

    now = now or timezone.now()
    running = list(VmBackup.objects.filter(store__device_server=server, status=RunStatus.RUNNING)
                   .values_list("bytes_processed", "started_at"))
    rate = sum(done / max((now - started).total_seconds(), 1.0) for done, started in running if started)
    queued = VmBackup.objects.filter(store__device_server=server, status=RunStatus.QUEUED).count()
    return Activity(running=len(running), bytes_per_second=rate, queued=queued)
