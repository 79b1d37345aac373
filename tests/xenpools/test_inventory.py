"""Full inventory sync against the simulator."""
import pytest
from django.db import connection as db

from xenpools import inventory
from xenpools.choices import PoolHealth
from xenpools.connection import PoolCertificateUnknown, PoolUnreachable, fetch_fingerprint, parse_address
from xenpools.inventory import sync_pool
from xenpools.models import VDI, VIF, VM, Host, Network, Pool, StorageRepository, VirtualDisk

from .xenapi_helpers import guest_vms, vm_by_power_state, xenapi_session


def test_a_sync_mirrors_hosts_storage_networks_vms_disks_and_interfaces(sim, make_pool):
    pool = make_pool(sim)

    with xenapi_session(sim.url) as x:
        hosts = x.host.get_all_records()
        srs = x.SR.get_all_records()
        vms = guest_vms(x)
        vbds = x.VBD.get_all_records()
        vifs = x.VIF.get_all_records()
        networks = x.network.get_all_records()
        a_vm_ref, a_vm = next(iter(vms.items()))
        its_disks = [vbds[ref] for ref in a_vm["VBDs"]]
        its_vdis = {vbd["VDI"]: x.VDI.get_record(vbd["VDI"]) for vbd in its_disks if vbd["VDI"] != "OpaqueRef:NULL"}

    pool.refresh_from_db()
    assert pool.health == PoolHealth.HEALTHY and pool.last_sync is not None
    assert set(Host.objects.filter(pool=pool).values_list("uuid", flat=True)) == {h["uuid"] for h in hosts.values()}
    assert Host.objects.get(pool=pool, is_master=True).address == "127.0.0.1"
    assert set(StorageRepository.objects.filter(pool=pool).values_list("uuid", flat=True)) == {s["uuid"] for s in srs.values()}
    assert Network.objects.filter(pool=pool).count() == len(networks)
    assert set(VM.objects.filter(pool=pool, is_snapshot=False).values_list("uuid", flat=True)) == {v["uuid"] for v in vms.values()}
    assert sorted(pool.member_addresses) == sorted(h["address"] for h in hosts.values())

    vm = VM.objects.get(pool=pool, uuid=a_vm["uuid"])
    assert vm.name == a_vm["name_label"] and vm.power_state == a_vm["power_state"]
    assert vm.memory == int(a_vm["memory_static_max"])
    mirrored_disks = VirtualDisk.objects.filter(vm=vm).select_related("vdi__sr")
    assert sorted(d.uuid for d in mirrored_disks) == sorted(d["uuid"] for d in its_disks)
    for disk in mirrored_disks:
        if disk.vdi:
            source = next(v for v in its_vdis.values() if v["uuid"] == disk.vdi.uuid)
            assert disk.vdi.virtual_size == int(source["virtual_size"])
            assert disk.vdi.sr.uuid == srs[source["SR"]]["uuid"]
    assert VIF.objects.filter(pool=pool).count() == sum(1 for v in vifs.values() if v["VM"] in vms)
    assert set(VIF.objects.filter(vm=vm).values_list("mac", flat=True)) == {vifs[r]["MAC"] for r in a_vm["VIFs"]}
    assert VDI.objects.filter(pool=pool).exists()


def test_a_local_sr_knows_the_host_that_sees_it(sim, make_pool):
    pool = make_pool(sim)

    local = StorageRepository.objects.filter(pool=pool, shared=False, type__in=["lvm", "ext"]).first()
    assert local is not None
    assert local.hosts.count() == 1
    shared = StorageRepository.objects.filter(pool=pool, shared=True).first()
    assert shared.hosts.count() == Host.objects.filter(pool=pool).count()


def test_a_vm_deleted_on_the_pool_is_marked_removed_not_deleted(sim, make_pool):
    pool = make_pool(sim)
    with xenapi_session(sim.url) as x:
        ref, record = vm_by_power_state(x, "Halted")
        x.VM.destroy(ref)

    result = sync_pool(pool)

    vm = VM.objects.get(pool=pool, uuid=record["uuid"])
    assert vm.removed_at is not None
    assert vm in result.vm_changes


def test_a_second_sync_changes_nothing_when_the_pool_did_not_change(sim, make_pool):
    pool = make_pool(sim)

    result = sync_pool(pool)

    assert result.vm_changes == []
    assert result.counts == {}


def test_a_pool_that_goes_away_mid_sync_is_marked_unhealthy_and_keeps_its_inventory(sim, make_pool, monkeypatch):
    pool = make_pool(sim)
    before = sorted(VM.objects.filter(pool=pool).values_list("uuid", "power_state", "removed_at"))
    real_fetch = inventory.fetch_records

    def pool_goes_away_while_reading(connection, on_read=None):
        connection.xenapi.pool.get_all_records()   # the pool answers...
        sim.stop()                                 # ...then every host disappears
        return real_fetch(connection, on_read)

    monkeypatch.setattr(inventory, "fetch_records", pool_goes_away_while_reading)
    with pytest.raises(PoolUnreachable):
        sync_pool(pool)

    pool.refresh_from_db()
    assert pool.health == PoolHealth.UNREACHABLE
    assert "127.0.0.1" in pool.last_error
    assert sorted(VM.objects.filter(pool=pool).values_list("uuid", "power_state", "removed_at")) == before


def test_the_password_is_encrypted_in_the_database(sim, make_pool):
    pool = make_pool(sim, sync=False)

    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM xenpools_pool WHERE id = %s", [pool.pk])
        row = cursor.fetchone()
    assert not any(sim.password in str(value) for value in row)
    assert Pool.objects.get(pk=pool.pk).get_password() == sim.password


def test_a_sync_fails_over_to_the_surviving_host_when_the_master_dies(sim, make_pool):
    pool = make_pool(sim)
    with xenapi_session(sim.url) as x:
        master = x.pool.get_master(x.pool.get_all()[0])
    sim.control.fail_host(master)

    sync_pool(pool)

    pool.refresh_from_db()
    assert pool.master_address == "127.0.0.2" and pool.health == PoolHealth.HEALTHY
    assert Host.objects.get(pool=pool, is_master=True).address == "127.0.0.2"
    assert Host.objects.get(pool=pool, address="127.0.0.1").live is False


def test_a_planned_master_change_is_followed(sim, make_pool):
    pool = make_pool(sim)
    with xenapi_session(sim.url) as x:
        new_master = next(ref for ref, h in x.host.get_all_records().items() if h["address"] == "127.0.0.2")
    sim.control.move_master(new_master)

    sync_pool(pool)

    pool.refresh_from_db()
    assert pool.master_address == "127.0.0.2"


@pytest.mark.slow
def test_a_sync_of_1000_vms_uses_a_bounded_number_of_queries(sim_factory, make_pool, django_assert_max_num_queries):
    sim = sim_factory("--test-vms", "4", "--vms", "1000")
    pool = make_pool(sim, sync=False)

    with django_assert_max_num_queries(120):      # measured: 78 on the first sync
        sync_pool(pool)
    with django_assert_max_num_queries(40):       # measured: 23 when nothing changed
        sync_pool(pool)

    assert VM.objects.filter(pool=pool, removed_at=None).count() == 1004


def test_over_tls_a_surviving_member_is_trusted_only_with_a_pinned_certificate(tls_sim, make_pool):
    fingerprint = fetch_fingerprint(parse_address(tls_sim.url))
    pool = make_pool(tls_sim, fingerprint=fingerprint)
    with xenapi_session(tls_sim.url) as x:
        master = x.pool.get_master(x.pool.get_all()[0])
    tls_sim.control.fail_host(master)

    # The member's certificate was pinned over the verified master session at the first sync.
    sync_pool(pool)
    pool.refresh_from_db()
    assert pool.master_address == "127.0.0.2"

    # Without that pin, failing over to the member does not make its certificate trusted.
    pool.fingerprints = {"127.0.0.1": fingerprint}
    pool.save()
    with pytest.raises(PoolCertificateUnknown):
        sync_pool(pool)
    pool.refresh_from_db()
    assert pool.health == PoolHealth.CERTIFICATE


def test_over_tls_member_certificates_are_learnt_through_the_verified_master(tls_sim, make_pool):
    fingerprint = fetch_fingerprint(parse_address(tls_sim.url))

    pool = make_pool(tls_sim, fingerprint=fingerprint)

    member = fetch_fingerprint(parse_address(tls_sim.member_url(1)))
    assert pool.fingerprints == {"127.0.0.1": fingerprint, "127.0.0.2": member}


def test_the_hidden_base_copies_of_lvm_snapshot_chains_are_not_listed_as_disks(sim, make_pool):
    # LVHDVDI._snapshot leaves a read-only "base copy" with managed=false, which
    # VDI.get_all_records lists like any VDI.
    lvm = sim.control.create_sr(name="iSCSI LVM", type="lvmoiscsi", size=4 << 30)
    made = sim.control.create_vm("on-lvm", [16 << 20], sr=lvm["uuid"], written_blocks=4)
    with xenapi_session(sim.url) as x:
        x.VM.snapshot(x.VM.get_by_uuid(made["uuid"]), "first")
        base_copies = {r["uuid"] for r in x.VDI.get_all_records().values() if not r["managed"]}
    assert base_copies

    pool = make_pool(sim)

    mirrored = set(VDI.objects.filter(pool=pool).values_list("uuid", flat=True))
    assert made["vdis"][0] in mirrored
    assert not base_copies & mirrored
