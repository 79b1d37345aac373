"""The clean-up pass over a pool (backups/pool_cleanup.py, backups/engine/leftovers.py) on the
simulator: what a killed backup left is removed and audited, what a running backup owns is left
alone, a disk still attached to dom0 is kept, reported and removed by a later pass."""
from datetime import timedelta

import pytest
import XenAPI
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from backups.choices import BackupMethod, CleanupStatus, RunStatus, Trigger
from backups.engine.leftovers import CHAIN_DISK, Leftover, remove_leftovers
from backups.engine.snapshots import CHAIN_KEY, tag_snapshot
from backups.models import PoolCleanup, RestoreRun, VmBackup
from backups.pool_cleanup import CleanupAlreadyRunning, clean_all_pools, request_cleanup
from backups.services import request_backup
from backups.tasks import clean_pool_task
from sesamweb.audit.models import AuditEvent
from xenpools.models import StorageRepository


@pytest.fixture
def xapi(sim):
    session = XenAPI.Session(sim.url, ignore_ssl=True)
    session.xenapi.login_with_password("root", sim.password, "1.0", "test")
    yield session.xenapi
    try:
        session.xenapi.session.logout()
    except OSError:         # the pool was stopped by the test
        pass


def backup_left_behind(xapi, vm, store, *, heartbeat_age, owner="worker-host-2:4242", chain_disk=False):
    """A VmBackup in the state a worker leaves it in (RUNNING, its lease heart-beating until
    `heartbeat_age` ago) with the snapshot the engine tags at once (prepare.prepare_vm:
    tag_snapshot) and, optionally, a disk kept for the next incremental (CHAIN_KEY)."""
    vm_backup = request_backup(vm=vm, store=store, method=BackupMethod.NORMAL, trigger=Trigger.CLI).vm_backups.get()
    VmBackup.objects.filter(pk=vm_backup.pk).update(
        status=RunStatus.RUNNING, lease_owner=owner, lease_heartbeat=timezone.now() - heartbeat_age,
        started_at=timezone.now() - heartbeat_age)
    vm_ref = xapi.VM.get_by_uuid(vm.uuid)
    snapshot = xapi.VM.snapshot(vm_ref, f"sesamweb backup {vm_backup.pk} of {vm.name}")
    tag_snapshot(xapi, snapshot, vm_backup.pk)
    chain = None
    if chain_disk:
        disk = next(xapi.VBD.get_VDI(v) for v in xapi.VM.get_VBDs(vm_ref) if xapi.VBD.get_type(v) == "Disk")
        chain = xapi.VDI.snapshot(disk, {})
        xapi.VDI.add_to_other_config(chain, CHAIN_KEY, str(vm_backup.pk))
    return vm_backup, snapshot, chain


def exists(xapi, cls, ref):
    try:
        getattr(xapi, cls).get_uuid(ref)
    except XenAPI.Failure as failure:
        assert failure.details[0] == "HANDLE_INVALID"
        return False
    return True


def test_a_killed_backups_snapshot_and_chain_disk_are_removed_and_audited(sim, xapi, pool, store, vm_named):
    killed, snapshot, chain = backup_left_behind(xapi, vm_named("test-vm-1"), store,
                                                 heartbeat_age=timedelta(minutes=10), chain_disk=True)
    snapshot_uuid, chain_uuid = xapi.VM.get_uuid(snapshot), xapi.VDI.get_uuid(chain)

    [cleanup] = clean_all_pools()

    assert VmBackup.objects.get(pk=killed.pk).status == RunStatus.FAILED      # its lease had gone stale
    assert not exists(xapi, "VM", snapshot) and not exists(xapi, "VDI", chain)
    assert cleanup.status == CleanupStatus.DONE and cleanup.kept == []
    assert sorted((item["kind"], item["uuid"], item["owner"]) for item in cleanup.removed) == sorted([
        ("chain disk", chain_uuid, f"backup #{killed.pk}"), ("snapshot", snapshot_uuid, f"backup #{killed.pk}")])
    event = AuditEvent.objects.get(action="delete", target_type="xenpools.pool", target_id=str(pool.pk))
    assert event.actor_username == "" and event.outcome == "success"
    assert f"removed snapshot 'sesamweb backup {killed.pk} of test-vm-1' ({snapshot_uuid})" in event.message
    assert chain_uuid in event.message and event.before["removed"] == cleanup.removed

    [again] = clean_all_pools()             # nothing left: recorded on the pool, no audit noise
    assert again.removed == [] and again.summary == "nothing to remove"
    assert AuditEvent.objects.filter(action="delete", target_id=str(pool.pk)).count() == 1


def test_a_killed_restores_vm_and_disks_are_removed_and_a_running_restores_kept(sim, xapi, pool):
    sr = xapi.SR.get_by_uuid(StorageRepository.objects.get(pool=pool, name="Shared NFS storage").uuid)

    def restored(run, name):
        """What a restore creates first (restore/engine.py: VM.create, then VDI.create and
        VBD.create), each tagged with its run before data flows."""
        tag = {"sesamweb_restore": str(run.pk)}
        vm = xapi.VM.clone(next(ref for ref, r in xapi.VM.get_all_records().items()
                                if not r["is_a_template"] and not r["is_control_domain"] and not r["is_a_snapshot"]
                                and r["power_state"] == "Halted"), name)
        for vbd in xapi.VM.get_VBDs(vm):          # the clone's own disks: not what a restore makes
            vdi = xapi.VBD.get_VDI(vbd)
            xapi.VBD.destroy(vbd)
            if vdi != "OpaqueRef:NULL":
                xapi.VDI.destroy(vdi)
        xapi.VM.add_to_other_config(vm, "sesamweb_restore", str(run.pk))
        disk = xapi.VDI.create({"name_label": f"{name} disk", "SR": sr, "virtual_size": str(1 << 20), "type": "user",
                                "sharable": False, "read_only": False, "other_config": tag,
                                "xenstore_data": {}, "sm_config": {}, "tags": []})
        xapi.VBD.create({"VM": vm, "VDI": disk, "userdevice": "0", "bootable": True, "mode": "RW", "type": "Disk",
                         "unpluggable": True, "empty": False, "other_config": {}, "qos_algorithm_type": "",
                         "qos_algorithm_params": {}})
        loose = xapi.VDI.create({"name_label": f"{name} second disk", "SR": sr, "virtual_size": str(1 << 20),
                                 "type": "user", "sharable": False, "read_only": False, "other_config": tag,
                                 "xenstore_data": {}, "sm_config": {}, "tags": []})
        return vm, disk, loose

    killed = RestoreRun.objects.create(store_point_id="x/y", status=RunStatus.RUNNING, target_pool=pool,
                                       lease_heartbeat=timezone.now() - timedelta(minutes=10))
    running = RestoreRun.objects.create(store_point_id="x/z", status=RunStatus.RUNNING, target_pool=pool,
                                        lease_heartbeat=timezone.now())
    dead_objects = restored(killed, "half restored")
    live_objects = restored(running, "being restored")

    [cleanup] = clean_all_pools()

    assert RestoreRun.objects.get(pk=killed.pk).status == RunStatus.FAILED
    vm, disk, loose = dead_objects
    assert not exists(xapi, "VM", vm) and not exists(xapi, "VDI", disk) and not exists(xapi, "VDI", loose)
    assert sorted(item["kind"] for item in cleanup.removed) == ["restored VM", "restored disk"]
    assert {item["owner"] for item in cleanup.removed} == {f"restore #{killed.pk}"}
    assert all(exists(xapi, cls, ref) for cls, ref in zip(("VM", "VDI", "VDI"), live_objects))


def test_a_running_backups_snapshot_is_left_alone(sim, xapi, pool, store, vm_named):
    running, snapshot, chain = backup_left_behind(xapi, vm_named("test-vm-2"), store, heartbeat_age=timedelta(0),
                                                  chain_disk=True)
    ended, recent, _ = backup_left_behind(xapi, vm_named("test-vm-3"), store, heartbeat_age=timedelta(seconds=20))
    VmBackup.objects.filter(pk=ended.pk).update(status=RunStatus.FAILED)     # ended moments ago

    [cleanup] = clean_all_pools()

    assert VmBackup.objects.get(pk=running.pk).status == RunStatus.RUNNING
    assert exists(xapi, "VM", snapshot) and exists(xapi, "VDI", chain) and exists(xapi, "VM", recent)
    assert cleanup.removed == [] and cleanup.waiting == 1 and "left for later" in cleanup.summary

    VmBackup.objects.filter(pk=ended.pk).update(lease_heartbeat=timezone.now() - timedelta(minutes=5))
    [later] = clean_all_pools()
    assert [item["owner"] for item in later.removed] == [f"backup #{ended.pk}"]
    assert exists(xapi, "VM", snapshot) and not exists(xapi, "VM", recent)


def test_a_disk_attached_to_dom0_is_kept_reported_and_removed_by_a_later_pass(sim, xapi, pool, store, vm_named):
    """xapi refuses VDI.destroy while a VBD of the disk is attached (xapi_vdi.ml,
    check_operation_error: blocked_by_attach -> VDI_IN_USE), as it is while an NBD client is
    connected (dom0 plugs a VBD for it). Destroying the snapshot VM first would leave an
    untagged disk nobody finds again, so the whole snapshot is kept until the disk is free."""
    killed, snapshot, _ = backup_left_behind(xapi, vm_named("test-vm-1"), store, heartbeat_age=timedelta(minutes=10))
    disk = next(xapi.VBD.get_VDI(v) for v in xapi.VM.get_VBDs(snapshot) if xapi.VBD.get_type(v) == "Disk")
    dom0 = xapi.host.get_control_domain(xapi.pool.get_master(xapi.pool.get_all()[0]))
    vbd = xapi.VBD.create({"VM": dom0, "VDI": disk, "userdevice": "autodetect", "bootable": False, "mode": "RO",
                           "type": "Disk", "unpluggable": True, "empty": False, "other_config": {},
                           "qos_algorithm_type": "", "qos_algorithm_params": {}})
    xapi.VBD.plug(vbd)
    with pytest.raises(XenAPI.Failure) as refused:
        xapi.VDI.destroy(disk)
    assert refused.value.details[0] == "VDI_IN_USE"

    [cleanup] = clean_all_pools()

    assert exists(xapi, "VM", snapshot) and exists(xapi, "VDI", disk)
    assert cleanup.status == CleanupStatus.KEPT and cleanup.removed == []
    [kept] = cleanup.kept
    assert kept["owner"] == f"backup #{killed.pk}" and "control domain (dom0)" in kept["reason"]
    assert "VDI_IN_USE" in kept["reason"]
    event = AuditEvent.objects.get(action="delete", target_id=str(pool.pk))
    assert event.outcome == "failure" and "could not remove snapshot" in event.message

    xapi.VBD.unplug(vbd)
    xapi.VBD.destroy(vbd)
    [retried] = clean_all_pools()
    assert retried.status == CleanupStatus.DONE and [i["uuid"] for i in retried.removed] == [kept["uuid"]]
    assert not exists(xapi, "VM", snapshot) and not exists(xapi, "VDI", disk)


def test_a_removal_xapi_refuses_is_kept_with_its_reason(sim, xapi, pool, vm_named):
    """The race the pre-check cannot see (a VBD plugged after the records were read): xapi's
    own VDI_IN_USE (xapi_vdi.ml, check_operation_error) is caught, reported, and retried."""
    vm_ref = xapi.VM.get_by_uuid(vm_named("test-vm-1").uuid)
    if xapi.VM.get_power_state(vm_ref) != "Running":
        xapi.VM.start(vm_ref, False, False)
    disk = next(xapi.VBD.get_VDI(v) for v in xapi.VM.get_VBDs(vm_ref) if xapi.VBD.get_type(v) == "Disk")
    leftover = Leftover(CHAIN_DISK, disk, xapi.VDI.get_uuid(disk), "a disk", "backup #1")

    report = remove_leftovers(xapi, [leftover])

    assert report.removed == [] and report.kept[0][0] is leftover and report.kept[0][1].startswith("VDI_IN_USE")
    assert exists(xapi, "VDI", disk)


def test_clean_up_now_is_for_operators_queued_once_and_shown_on_the_pool_page(
        sim, xapi, pool, store, vm_named, operator_client, auditor_client):
    killed, snapshot, _ = backup_left_behind(xapi, vm_named("test-vm-1"), store, heartbeat_age=timedelta(minutes=10))
    url = reverse("backups:pool_cleanup", args=[pool.pk])

    assert auditor_client.post(url).status_code == 403
    assert "Clean up now" not in auditor_client.get(pool.get_absolute_url()).content.decode()
    assert operator_client.post(url).status_code == 302
    refused = operator_client.post(url, follow=True)
    assert "already running" in refused.content.decode()
    with pytest.raises(CleanupAlreadyRunning):
        request_cleanup(pool)
    [queued] = [row.task for row in OrmQ.objects.all() if row.task["func"] == "backups.tasks.clean_pool_task"]

    assert clean_pool_task(*queued["args"]).startswith("pool lab: 1 leftover(s) removed")

    cleanup = PoolCleanup.objects.get()
    assert cleanup.requested_by == operator_client.user and not exists(xapi, "VM", snapshot)
    from sesamweb.live.models import LiveEvent
    published = [(e.payload["status"], e.payload["summary"]) for e in LiveEvent.objects.filter(topic=f"pool:{pool.pk}")
                 .order_by("id") if e.payload["type"] == "pool.cleanup"]
    assert published == [("running", ""), ("done", "1 leftover(s) removed")]
    event = AuditEvent.objects.get(action="delete", target_id=str(pool.pk))
    assert event.actor_username == operator_client.user.username
    page = operator_client.get(pool.get_absolute_url()).content.decode()
    assert "1 leftover(s) removed" in page and xapi is not None and f"sesamweb backup {killed.pk} of test-vm-1" in page
    assert clean_pool_task(*queued["args"]) == "pool lab: 1 leftover(s) removed"     # re-delivered: not run twice


def test_every_pool_is_cleaned_every_hour(db):
    row = Schedule.objects.get(func="backups.tasks.clean_pools_task")
    assert row.schedule_type == Schedule.HOURLY and row.repeats == -1


@pytest.mark.slow   # a real `manage.py backup` process is started and SIGKILLed mid-transfer (about 5 s)
@pytest.mark.django_db(transaction=True)
def test_the_pass_removes_what_a_sigkilled_backup_process_left(sim, pool, store, vm_named, pool_reader):
    import os
    import signal
    import subprocess
    import sys

    from tests.fixtures.cluster import REPO, shared_database_env, wait_for

    vm = vm_named("test-vm-4")
    sim.control.rate_limit(4 * 1024 * 1024)
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "backup", "--vm", vm.uuid, "--store", store.name, "--method", "normal"],
        cwd=REPO, env=shared_database_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        running = wait_for(lambda: VmBackup.objects.filter(vm_uuid=vm.uuid, phase="streaming", bytes_read__gt=0).first(),
                           "the backup to stream", timeout=60)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    sim.control.clear_faults()
    [(name, uuid)] = pool_reader.snapshots()

    [early] = clean_all_pools()              # its worker is dead (gone from this host), but showed life just now
    assert VmBackup.objects.get(pk=running.pk).status == RunStatus.FAILED
    assert early.waiting == 1 and pool_reader.snapshots() == [(name, uuid)]

    [cleanup] = clean_all_pools(now=timezone.now() + timedelta(minutes=3))     # the next pass, later on

    assert pool_reader.snapshots() == []
    assert [(i["kind"], i["uuid"], i["owner"]) for i in cleanup.removed] == [("snapshot", uuid, f"backup #{running.pk}")]
    event = AuditEvent.objects.get(action="delete", target_id=str(pool.pk))
    assert f"removed snapshot '{name}' ({uuid}) of backup #{running.pk}" in event.message


def test_the_api_asks_for_a_pass_and_lists_the_passes(sim, xapi, pool, store, vm_named, api_client):
    killed, snapshot, _ = backup_left_behind(xapi, vm_named("test-vm-1"), store, heartbeat_age=timedelta(minutes=10))

    assert api_client("auditor").post("/api/pool-cleanups/", {"pool": pool.pk}, format="json").status_code == 403
    operator = api_client("operator")
    asked = operator.post("/api/pool-cleanups/", {"pool": pool.pk}, format="json")
    assert asked.status_code == 202 and asked.data["status"] == "queued" and asked.data["requested_by"] == operator.user.username
    assert operator.post("/api/pool-cleanups/", {"pool": pool.pk}, format="json").status_code == 409
    assert operator.post("/api/pool-cleanups/", {"pool": 999999}, format="json").status_code == 400
    clean_pool_task(asked.data["id"])

    listed = api_client("auditor").get(f"/api/pool-cleanups/?pool={pool.pk}")
    [done] = listed.data["results"]
    assert done["status"] == "done" and [i["owner"] for i in done["removed"]] == [f"backup #{killed.pk}"]


def test_a_pool_lost_midway_keeps_the_rest_for_the_next_pass(sim, xapi, pool, store, vm_named):
    from backups.engine.leftovers import find_backup_leftovers

    backup_left_behind(xapi, vm_named("test-vm-1"), store, heartbeat_age=timedelta(minutes=10), chain_disk=True)
    VmBackup.objects.update(status=RunStatus.FAILED)
    found, _ = find_backup_leftovers(xapi)
    assert len(found) == 2
    sim.stop()

    report = remove_leftovers(xapi, found)

    assert report.removed == [] and [leftover for leftover, _ in report.kept] == found
    assert all(reason.startswith("the connection to the pool was lost") for _, reason in report.kept)
