"""The --demo pool: two hosts, shared and local SRs, about ten mixed VMs, an NBD network."""

import pytest


@pytest.mark.slow
def test_the_demo_pool_has_mixed_vms_storage_and_networks(demo_sim):
    x = demo_sim.session().xenapi
    vms = {r["name_label"]: r for r in x.VM.get_all_records().values()
           if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"])}
    assert len(vms) == 10
    assert {r["power_state"] for r in vms.values()} == {"Running", "Halted"}
    distros = {x.VM_guest_metrics.get_os_version(r["guest_metrics"])["distro"] for r in vms.values()}
    assert distros == {"debian", "windows"}
    disk_counts = {len([v for v in r["VBDs"] if x.VBD.get_type(v) == "Disk"]) for r in vms.values()}
    assert disk_counts == {1, 2, 3}
    srs = x.SR.get_all_records().values()
    assert sum(1 for s in srs if s["shared"] and s["content_type"] == "user") == 1
    assert sum(1 for s in srs if not s["shared"]) == 2
    assert any("insecure_nbd" in n["purpose"] for n in x.network.get_all_records().values())
    sizes = [int(x.VDI.get_virtual_size(x.VBD.get_VDI(v))) for r in vms.values() for v in r["VBDs"]]
    assert min(sizes) == 64 << 20 and max(sizes) == 4 << 30
    used = [int(x.VDI.get_physical_utilisation(x.VBD.get_VDI(v))) for r in vms.values() for v in r["VBDs"]]
    assert all(u > 0 for u in used)
