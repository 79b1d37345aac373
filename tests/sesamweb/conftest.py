"""The world the role sweep and the API fuzzing point into: a pool with a host, SR, network and
a running VM with a disk and a VIF, a local data store (real repository) and an S3 one, a job
with a schedule, a running backup run with a VM backup, a restore point, a restore, a user and
an API token per identity, an audit event, and the secrets a response must never show."""
import os
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from backups.choices import BackupKind, BackupMethod, BackupPhase, RunStatus
from backups.models import (
    PoolCleanup, BackupJob, BackupRun, DataStore, JobSchedule, ReplicationPolicy, RestorePoint, RestoreRun, StoreMaintenanceSchedule,
    VmBackup,
)
from backups.stores import create_store
from sesamweb.accounts.models import ApiToken
from sesamweb.accounts.roles import Role
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event
from tests.fixtures.users import TEST_PASSWORD, make_user
from xenpools.models import VDI, VIF, VM, Host, Network, Pool, StorageRepository, VirtualDisk

POOL_PASSWORD = "pool-password-sweep-7QX"
PASSPHRASE = "store passphrase sweep 5KD"
WEBHOOK_SECRET = "webhook-secret-sweep-9PZ"
S3_SECRET = "s3-secret-sweep-9ZP"

# The API fuzzing runs once per `make test`, in the PostgreSQL tier: it found there what SQLite
# accepts (NUL in text), and takes minutes (its schema is built at collection, hence not a skip).
# The SQLite tier has the role sweep over the same URLs.
collect_ignore = [] if os.environ.get("DATABASE_URL") else ["test_api_fuzz.py"]


@pytest.fixture
def world(tmp_path, db):
    now = timezone.now()
    users = {role.value: make_user(f"sweep-{role.value}", role) for role in Role}
    users["norole"] = make_user("sweep-norole")
    other = make_user("sweep-other", Role.OPERATOR)

    pool = Pool.objects.create(name="lab", address="127.0.0.1", port=1, uuid="pool-uuid", product_version="8.2.1")
    pool.set_password(POOL_PASSWORD)
    pool.save()
    host = Host.objects.create(pool=pool, uuid="host-uuid", ref="OpaqueRef:h", name="host-1", is_master=True)
    sr = StorageRepository.objects.create(pool=pool, uuid="sr-uuid", ref="OpaqueRef:sr", name="local")
    network = Network.objects.create(pool=pool, uuid="net-uuid", ref="OpaqueRef:n", name="lan")
    vm = VM.objects.create(pool=pool, uuid="11111111-1111-1111-1111-111111111111", ref="OpaqueRef:1",
                           name="web-01", power_state="Running", host=host)
    vdi = VDI.objects.create(pool=pool, uuid="vdi-uuid", ref="OpaqueRef:vdi", name="disk", sr=sr, virtual_size=8 << 20)
    VirtualDisk.objects.create(pool=pool, vm=vm, vdi=vdi, uuid="vbd-uuid", ref="OpaqueRef:vbd", userdevice="0")
    VIF.objects.create(pool=pool, vm=vm, network=network, uuid="vif-uuid", ref="OpaqueRef:vif", device="0")

    store = create_store(name="nas", path=str(tmp_path / "store"), passphrase=PASSPHRASE)
    s3_store = DataStore.objects.create(name="s3", kind="s3", s3_endpoint="http://127.0.0.1:1", s3_bucket="b",
                                        s3_access_key="AKIASWEEP", encrypted=False)
    s3_store.set_s3_secret(S3_SECRET)
    s3_store.save()

    job = BackupJob.objects.create(name="nightly", store=store)
    JobSchedule.objects.create(job=job, cron="0 22 * * *")
    run = BackupRun.objects.create(status=RunStatus.RUNNING, started_at=now, requested_by=users["operator"], job=job)
    point = RestorePoint.objects.create(store=store, point_id=f"{vm.uuid}/1700000000", vm_uuid=vm.uuid, vm_name=vm.name,
                                        taken_at=now - timedelta(hours=1), method=BackupMethod.NORMAL,
                                        kind=BackupKind.FULL, virtual_size=8 << 20, job=job)
    VmBackup.objects.create(run=run, vm=vm, pool=pool, vm_uuid=vm.uuid, vm_name=vm.name, store=store,
                            method=BackupMethod.NORMAL, kind=BackupKind.FULL, status=RunStatus.RUNNING,
                            phase=BackupPhase.STREAMING,
                            started_at=now, restore_point=point)
    RestoreRun.objects.create(point=point, store=store, store_point_id=point.point_id, source_vm_uuid=vm.uuid,
                              source_vm_name=vm.name, target_pool=pool, requested_by=users["operator"])

    StoreMaintenanceSchedule.objects.create(store=store, action="verify", cron="0 3 * * 0")
    ReplicationPolicy.objects.create(name="dr", vm_uuids=[vm.uuid], source_store=store, target_pool=pool, target_sr=sr)
    PoolCleanup.objects.create(pool=pool, status="kept", removed=[{"kind": "snapshot", "uuid": "snap-uuid",
                               "name": "sesamweb backup 1 of web-1", "owner": "backup #1"}],
                               kept=[{"kind": "chain disk", "uuid": "vdi-2", "name": "disk", "owner": "backup #1",
                                      "reason": "VDI_IN_USE"}])
    from sesamweb.notify.models import Channel, Rule
    from sesamweb.notify.services import save_channel, save_rule

    channel = save_channel(Channel(name="ops hook", kind="webhook", config={"url": "http://127.0.0.1:9/hook"}),
                           secret=WEBHOOK_SECRET)
    save_rule(Rule(name="failures", event_names=["run.failed"], min_severity="info"), channels=[channel])
    from sesamweb import notify

    notify.emit("run.failed", "error", title="sweep: a failed run", objects={"run": {"id": run.pk, "name": str(run)}})

    # A device server that owns a store of its own (its sealed copy is in the database), and
    # a registration token that was never used: its text must never come back.
    from backups.devices.registration import issue_token, register
    from backups.devices.sealing import create_key_file
    from backups.devices.stores import assign_store

    _used, device_token = issue_token("branch", site="Hamburg")
    device = register(token=device_token, name="branch", public_key=create_key_file(tmp_path / "device.key"))
    assign_store(create_store(name="branch-nas", path=str(tmp_path / "branch"), passphrase=PASSPHRASE), device)
    _pending, pending_token = issue_token("plant", site="Linz")

    tokens = {}
    for name, user in users.items():
        token, key = ApiToken.issue(user, "sweep")
        # Stamped as just used: token authentication then writes nothing for a minute.
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        tokens[name] = key
    _, other_key = ApiToken.issue(other, "other")
    record_event(AuditAction.UPDATE, target=pool, actor=users["administrator"], message="sweep fixture")

    secrets = {
        "pool password": POOL_PASSWORD,
        "data store passphrase": PASSPHRASE,
        "data store key": store.data_key(),
        "S3 secret": S3_SECRET,
        "webhook secret": WEBHOOK_SECRET,
        "SESAM_SECRET_KEY": django_settings.SESAM_SECRET_KEY,
        "SECRET_KEY": django_settings.SECRET_KEY,
        "user password": TEST_PASSWORD,
        "device registration token": pending_token,
        "used device registration token": device_token,
        **{f"API token of {name}": key for name, key in {**tokens, "other": other_key}.items()},
    }
    return {"users": users, "tokens": tokens, "secrets": {k: v for k, v in secrets.items() if v},
            "vm": vm, "point": point, "store": store}
