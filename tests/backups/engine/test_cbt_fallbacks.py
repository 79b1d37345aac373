"""What a real pool's change tracking makes the engine survive (issue 16, items 1, 2, 3, 5):
a reset change log, a data-destroyed base without NBD, pools and SRs that refuse CBT, and
the dom0 VBD each NBD connection holds. The simulator refuses these as xapi and sm do
(tests/xapisim/test_cbt.py)."""
import time

import pytest
import XenAPI

from backups.choices import RunStatus
from backups.engine.backup import cleanup_leftovers
from backups.engine.snapshots import TAG_KEY, DiskLeftOver, destroy_snapshot, destroy_vdi
from backups.formats.nbd import connect_from_nbd_info
from backups.models import VmChangeTracking
from tests.backups.engine.test_incremental import back_up, chain_vdis, stored
from xenpools.connection import PoolConnection

pytestmark = pytest.mark.slow


def vm_disk(pool_reader, vm):
    xenapi = pool_reader.xenapi
    return xenapi.VDI.get_by_uuid(pool_reader.disks(vm.uuid)["0"])


# -- 1. a reset change log ---------------------------------------------------------------------
def test_a_reset_cbt_log_gives_one_full_backup_with_the_reason_then_incrementals(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-4")
    assert back_up(vm, store).kind == "full"
    xenapi = pool_reader.xenapi
    disk = vm_disk(pool_reader, vm)
    xenapi.VDI.disable_cbt(disk)          # e.g. another tool, or an administrator, switched it off and on
    xenapi.VDI.enable_cbt(disk)
    sim.control.guest_write(4, vm=vm.uuid)

    reset = back_up(vm, store)

    assert reset.status == RunStatus.WARNING, reset.error
    assert reset.kind == "full"
    assert reset.kind_reason.startswith("full: disk vbd0: the pool's change log was reset")
    assert any("change log was reset" in w for w in reset.warnings)
    assert stored(store, reset.restore_point) == pool_reader.raw(pool_reader.disks(vm.uuid)["0"])
    assert len(chain_vdis(pool_reader)) == 1                # a new chain starts from this backup

    written = sim.control.guest_write(3, vm=vm.uuid)
    again = back_up(vm, store)
    assert again.status == RunStatus.SUCCESS, again.error
    assert again.kind == "incremental"
    assert again.bytes_read <= 1.5 * len(set(written["blocks"])) * 64 * 1024
    assert stored(store, again.restore_point) == pool_reader.raw(pool_reader.disks(vm.uuid)["0"])


def test_a_cbt_log_lost_in_a_host_crash_gives_one_full_backup_then_incrementals(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-4")
    back_up(vm, store)
    sim.control.lose_cbt_log(vdi=pool_reader.disks(vm.uuid)["0"])     # sm turns CBT off with a message

    lost = back_up(vm, store)
    assert lost.kind == "full"
    assert lost.kind_reason == "full: changed block tracking was disabled on the VM's disk"
    assert pool_reader.xenapi.VDI.get_cbt_enabled(vm_disk(pool_reader, vm)) is True    # switched on again

    assert back_up(vm, store).kind == "incremental"


# -- 2. a data-destroyed base ------------------------------------------------------------------
def test_a_data_destroyed_base_is_never_used_for_a_vhd_delta(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-3")
    back_up(vm, store)                                        # over NBD: the kept base is data-destroyed
    assert next(iter(chain_vdis(pool_reader).values()))["type"] == "cbt_metadata"
    xenapi = pool_reader.xenapi
    for ref, record in xenapi.network.get_all_records().items():
        for purpose in record["purpose"]:
            xenapi.network.remove_purpose(ref, purpose)
    sim.control.guest_write(3, vm=vm.uuid)

    without_nbd = back_up(vm, store)

    assert without_nbd.kind == "full", without_nbd.error
    assert "holds only change-tracking data" in without_nbd.kind_reason
    assert without_nbd.attempts == 1                         # not three failed VHD transfers
    assert next(iter(chain_vdis(pool_reader).values()))["type"] != "cbt_metadata"
    sim.control.guest_write(2, vm=vm.uuid)
    after = back_up(vm, store)
    assert after.kind == "incremental", after.error          # a VHD delta against a base with data
    assert stored(store, after.restore_point) == pool_reader.raw(pool_reader.disks(vm.uuid)["0"])


# -- 3. where CBT cannot be enabled ------------------------------------------------------------
def test_without_the_cbt_licence_backups_are_full_with_one_warning(sim, vm_named, store, pool_reader):
    vm = vm_named("test-vm-3")
    sim.control.set_cbt_licence(allowed=False)

    first, second, third = back_up(vm, store), back_up(vm, store), back_up(vm, store)

    assert first.status == RunStatus.WARNING
    assert first.warnings == ["full backups only for this VM: the pool's licence does not include changed block tracking"]
    for later in (second, third):
        assert later.status == RunStatus.SUCCESS and later.warnings == []
    for backup in (first, second, third):
        assert backup.kind == "full"
        assert backup.kind_reason == ("full: incrementals are not possible: "
                                      "the pool's licence does not include changed block tracking")
    assert VmChangeTracking.objects.get(vm_uuid=vm.uuid).code == "LICENCE_RESTRICTION"
    assert chain_vdis(pool_reader) == {} and pool_reader.snapshots() == []   # nothing kept for nothing

    sim.control.set_cbt_licence(allowed=True)
    licensed = back_up(vm, store)
    assert licensed.kind == "full" and not VmChangeTracking.objects.filter(vm_uuid=vm.uuid).exists()
    assert back_up(vm, store).kind == "incremental"


def test_on_an_sr_without_cbt_backups_are_full_and_the_vm_page_says_why(sim, vm_named, store, pool_reader,
                                                                          admin_client):
    vm = vm_named("test-vm-3")
    xenapi = pool_reader.xenapi
    sr = xenapi.VDI.get_SR(vm_disk(pool_reader, vm))
    sim.control.set_sr_type(sr=sr, type="zfs")

    first, second = back_up(vm, store), back_up(vm, store)

    assert (first.kind, second.kind) == ("full", "full")
    assert first.status == RunStatus.WARNING and second.status == RunStatus.SUCCESS
    reason = VmChangeTracking.objects.get(vm_uuid=vm.uuid).reason
    assert reason == (f"disk vbd0 is on storage repository {xenapi.SR.get_name_label(sr)} (type zfs), "
                      "whose storage driver has no changed block tracking")
    page = admin_client.get(vm.get_absolute_url()).content.decode()
    assert "Incremental backups" in page and "whose storage driver has no changed block tracking" in page


# -- 5. NBD connections and clean-up -----------------------------------------------------------
class Clock:
    """An injected clock: sleep moves it on, and may run a step (e.g. hang up a connection)."""

    def __init__(self, on_sleep=None):
        self.now, self.sleeps, self.on_sleep = 0.0, 0, on_sleep

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(self)


@pytest.fixture
def nbd_read_snapshot(pool, pool_reader):
    """A tagged snapshot of test-vm-2 whose disk is open over NBD (its dom0 VBD plugged)."""
    xenapi = pool_reader.xenapi
    vm = xenapi.VM.get_by_uuid(pool.vms.get(name="test-vm-2").uuid)
    snapshot = xenapi.VM.snapshot(vm, "sesamweb backup 999999 of test-vm-2")
    xenapi.VM.add_to_other_config(snapshot, TAG_KEY, "999999")
    (vbd,) = [v for v in xenapi.VM.get_VBDs(snapshot) if xenapi.VBD.get_type(v) == "Disk"]
    disk = xenapi.VBD.get_VDI(vbd)
    client = connect_from_nbd_info(xenapi.VDI.get_nbd_info(disk), tls=False)
    client.read(0, 512)
    yield snapshot, disk, client
    client.close()


def dom0_vbds(xenapi, vdi):
    found = []
    for vbd in xenapi.VDI.get_VBDs(vdi):
        try:
            if xenapi.VM.get_is_control_domain(xenapi.VBD.get_VM(vbd)):
                found.append(vbd)
        except XenAPI.Failure as exc:      # the connection's VBD went between the two calls
            assert exc.details[0] == "HANDLE_INVALID"
    return found


def test_a_disk_still_plugged_by_an_nbd_connection_is_deleted_once_it_is_free(nbd_read_snapshot, pool_reader):
    xenapi = pool_reader.xenapi
    _snapshot, disk, client = nbd_read_snapshot

    def hang_up_then_wait_for_the_vbd(clock):
        client.close()
        if dom0_vbds(xenapi, disk):
            return                        # the host has not let go yet: the engine tries again
        clock.on_sleep = None

    clock = Clock(on_sleep=hang_up_then_wait_for_the_vbd)
    destroy_vdi(xenapi, disk, clock=clock, sleep=clock.sleep, timeout=10_000)

    assert clock.sleeps >= 1
    with pytest.raises(XenAPI.Failure):
        xenapi.VDI.get_record(disk)


def test_a_disk_that_stays_in_use_is_left_tagged_and_logged_then_cleaned_up(nbd_read_snapshot, pool, pool_reader):
    xenapi = pool_reader.xenapi
    snapshot, disk, client = nbd_read_snapshot
    clock = Clock()
    uuid = xenapi.VDI.get_uuid(disk)

    with pytest.raises(DiskLeftOver) as left:
        destroy_snapshot(xenapi, snapshot, clock=clock, sleep=clock.sleep, timeout=3)

    assert clock.now >= 3                                  # retried until the deadline, then gave up
    assert f"disk {uuid}" in str(left.value) and f"{TAG_KEY}=999999" in str(left.value)
    assert xenapi.VDI.get_other_config(disk)[TAG_KEY] == "999999"     # identifiable for the pool clean-up
    client.close()
    deadline = time.monotonic() + 30
    while dom0_vbds(xenapi, disk):                         # the host lets go shortly after the hang-up
        assert time.monotonic() < deadline, "the NBD connection's VBD stayed"
        time.sleep(0.05)
    with PoolConnection.open(pool) as conn:
        assert cleanup_leftovers(conn) == 1
    assert uuid not in {r["uuid"] for r in xenapi.VDI.get_all_records().values()}
