"""validate_plan: each problem kind, tied to the wizard step and field it belongs to."""
import pytest

from backups.choices import BackupMethod
from backups.restore.plan import describe_point, validate_plan
from xenpools.models import Host, Network, Pool, StorageRepository

from .conftest import back_up

pytestmark = pytest.mark.slow


@pytest.fixture
def point_plan(vm_named, store, plan_for):
    vm_backup = back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL)
    return vm_backup, lambda **changes: plan_for(vm_backup, **changes)


@pytest.fixture
def other_pool(transactional_db):
    pool = Pool.objects.create(name="elsewhere", address="192.0.2.10")
    return {
        "pool": pool,
        "sr": StorageRepository.objects.create(pool=pool, uuid="sr-elsewhere", ref="r1", name="Far SR",
                                               physical_size=1 << 40),
        "network": Network.objects.create(pool=pool, uuid="net-elsewhere", ref="r2", name="Far LAN"),
        "host": Host.objects.create(pool=pool, uuid="host-elsewhere", ref="r3", name="far-host"),
    }


def problems_of(plan):
    return [(p.step, p.field) for p in validate_plan(plan)]


def test_the_default_plan_is_valid(point_plan):
    _, make = point_plan
    assert validate_plan(make()) == []


def test_describe_point_reads_the_vm_from_the_manifest(point_plan, vm_named):
    vm_backup, _ = point_plan
    details = describe_point(vm_backup.restore_point)
    vm = vm_named("test-vm-2")
    assert (details.vm_name, details.memory, details.vcpus) == ("test-vm-2", vm.memory, vm.vcpus)
    assert [(d.key, d.userdevice) for d in details.disks] == [("vbd0", "0")]
    assert details.disks[0].sr_name == "Shared NFS storage"
    assert [(v.device, v.network_name) for v in details.vifs] == [("0", "Pool-wide network associated with eth0")]
    assert details.vifs[0].mac


def test_not_enough_free_space_on_the_sr_is_a_storage_problem(point_plan):
    _, make = point_plan
    plan = make()
    sr = plan.sr_by_disk["vbd0"]
    StorageRepository.objects.filter(pk=sr.pk).update(physical_utilisation=sr.physical_size)
    sr.refresh_from_db()
    problems = validate_plan(plan)
    assert [(p.step, p.field) for p in problems] == [("storage", "sr_vbd0")]
    assert "free" in problems[0].message


def test_a_name_that_exists_in_the_pool_is_refused(point_plan):
    _, make = point_plan
    problems = validate_plan(make(name="test-vm-3"))
    assert [(p.step, p.field) for p in problems] == [("identity", "name")]
    assert "already exists" in problems[0].message


def test_keeping_the_identity_next_to_the_original_is_a_uuid_clash(point_plan):
    _, make = point_plan
    assert problems_of(make(identity="keep")) == [("identity", "identity")]


def test_replace_without_keeping_the_identity_is_refused(point_plan):
    _, make = point_plan
    assert problems_of(make(replace_original=True)) == [("identity", "replace_original")]


def test_a_network_of_another_pool_is_a_network_problem(point_plan, other_pool):
    _, make = point_plan
    assert problems_of(make(network_by_vif={"0": other_pool["network"]})) == [("network", "network_0")]


def test_an_unmapped_interface_is_a_network_problem(point_plan):
    _, make = point_plan
    assert problems_of(make(network_by_vif={})) == [("network", "network_0")]


def test_an_sr_of_another_pool_is_a_storage_problem(point_plan, other_pool):
    _, make = point_plan
    assert problems_of(make(sr_by_disk={"vbd0": other_pool["sr"]})) == [("storage", "sr_vbd0")]


def test_a_host_of_another_pool_is_a_target_problem(point_plan, other_pool):
    _, make = point_plan
    assert problems_of(make(target_host=other_pool["host"])) == [("target", "target_host")]


def test_resume_needs_a_point_with_memory(point_plan):
    _, make = point_plan
    problems = validate_plan(make(start_mode="resume"))
    assert [(p.step, p.field) for p in problems] == [("start", "start_mode")]
    assert "no memory image" in problems[0].message


def test_a_damaged_point_is_refused(point_plan):
    vm_backup, make = point_plan
    point = vm_backup.restore_point
    point.verify_state = "damaged"
    point.save()
    assert problems_of(make()) == [("point", "point")]


def test_keeping_the_identity_on_the_per_disk_path_is_refused(point_plan, pool):
    vm_backup, make = point_plan
    plan = make(identity="keep", replace_original=True)
    # a target network whose name is not unique cannot be expressed to xapi's importer
    Network.objects.create(pool=pool, uuid="dup", ref="dup", name=plan.network_by_vif["0"].name)
    problems = validate_plan(plan)
    assert ("identity", "identity") in [(p.step, p.field) for p in problems]
    assert "keeping the original UUID" in " ".join(p.message for p in problems)


def test_an_interface_with_no_matching_network_is_left_for_the_administrator(point_plan, pool):
    _, make = point_plan
    for number, network in enumerate(Network.objects.filter(pool=pool)):
        Network.objects.filter(pk=network.pk).update(name=f"renamed {number}", bridge=f"br{number}", uuid=f"new-{number}")
    plan = make()
    assert plan.network_by_vif == {}
    problems = validate_plan(plan)
    assert [(p.step, p.field) for p in problems] == [("network", "network_0")]
    assert "Pool-wide network associated with eth0" in problems[0].message
