"""Pool behaviour: master moves, HA failover, persistence, TLS, scale."""

import socket
import ssl
import urllib.request
import xmlrpc.client

import pytest
import XenAPI


def host_by_address(x, address):
    return [h for h in x.host.get_all() if x.host.get_address(h) == address][0]


def raw_call(url, method, *args):
    return getattr(xmlrpc.client.ServerProxy(url), method)(*args)


def test_designate_new_master_turns_the_old_one_into_a_member(sim):
    x = sim.session().xenapi
    old_session = sim.session().handle
    new_master = host_by_address(x, "127.0.0.2")
    x.pool.designate_new_master(new_master)
    with pytest.raises(XenAPI.Failure) as err:
        sim.session()
    assert err.value.details == ["HOST_IS_SLAVE", "127.0.0.2"]
    y = sim.session(sim.member_url(1)).xenapi
    assert y.pool.get_master(y.pool.get_all()[0]) == new_master
    assert raw_call(sim.member_url(1), "pool.get_all", old_session) == {
        "Status": "Failure", "ErrorDescription": ["SESSION_INVALID", old_session]}


def test_ha_failover_promotes_a_member_and_restarts_protected_vms(sim):
    x = sim.session().xenapi
    protected = x.VM.get_by_name_label("test-vm-1")[0]     # ha_restart_priority=restart, running on the master
    unprotected = x.VM.get_by_name_label("test-vm-3")[0]   # running on the master, not protected
    master = host_by_address(x, "127.0.0.1")
    assert x.VM.get_resident_on(protected) == master == x.VM.get_resident_on(unprotected)
    old_session = sim.session().handle
    result = sim.control.fail_host("127.0.0.1")
    assert protected in result["restarted"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=5)
    y = sim.session(sim.member_url(1)).xenapi
    new_master = y.pool.get_master(y.pool.get_all()[0])
    assert y.host.get_address(new_master) == "127.0.0.2"
    assert y.VM.get_power_state(protected) == "Running" and y.VM.get_resident_on(protected) == new_master
    assert y.VM.get_power_state(unprotected) == "Halted"
    assert y.host_metrics.get_live(y.host.get_metrics(master)) is False
    assert raw_call(sim.member_url(1), "pool.get_all", old_session)["ErrorDescription"] == ["SESSION_INVALID", old_session]
    sim.control.recover_host("127.0.0.1")
    with pytest.raises(XenAPI.Failure) as err:
        sim.session()
    assert err.value.details == ["HOST_IS_SLAVE", "127.0.0.2"]


def test_failing_a_member_keeps_the_master(sim):
    x = sim.session().xenapi
    sim.control.fail_host("127.0.0.2")
    assert x.host.get_address(x.pool.get_master(x.pool.get_all()[0])) == "127.0.0.1"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", sim.port), timeout=5)


def test_state_survives_a_restart(sim):
    x = sim.session().xenapi
    vm = x.VM.get_by_name_label("test-vm-1")[0]
    snap = x.VM.snapshot(vm, "kept across restart")
    sim.control.guest_write(8, vm="test-vm-1")
    vdi = x.VBD.get_VDI(x.VM.get_VBDs(vm)[0])
    session = sim.session()

    def raw():
        url = "%s/export_raw_vdi?session_id=%s&vdi=%s" % (sim.url, session.handle, vdi)
        with urllib.request.urlopen(url) as reply:
            return reply.read()

    before = raw()
    sim.stop()
    sim.start()
    session = sim.session()
    x = session.xenapi
    assert x.VM.get_power_state(vm) == "Running"
    assert snap in x.VM.get_snapshots(vm)
    assert raw() == before


def test_tls_serves_https_with_a_certificate_kept_across_restarts(sim_factory):
    sim = sim_factory("--tls", "--test-vms", "1")
    assert sim.url.startswith("https://")
    x = sim.session().xenapi
    assert x.pool.get_all()
    session = sim.session()
    vdi = session.xenapi.VDI.get_all()[0]
    url = "%s/export_raw_vdi?session_id=%s&vdi=%s" % (sim.url, session.handle, vdi)
    with urllib.request.urlopen(url, context=ssl._create_unverified_context()) as reply:
        assert len(reply.read()) == int(session.xenapi.VDI.get_virtual_size(vdi))
    first = ssl.get_server_certificate(("127.0.0.1", sim.port))
    x = session.xenapi
    master, member = host_by_address(x, "127.0.0.1"), host_by_address(x, "127.0.0.2")
    assert x.host.get_server_certificate(master).strip() == first.strip()
    member_pem = ssl.get_server_certificate(("127.0.0.2", sim.port))
    assert x.host.get_server_certificate(member).strip() == member_pem.strip() != first.strip()
    sim.stop()
    sim.start()
    assert ssl.get_server_certificate(("127.0.0.1", sim.port)) == first
    with pytest.raises(XenAPI.Failure) as err:
        sim.session(sim.member_url(1))
    assert err.value.details == ["HOST_IS_SLAVE", "127.0.0.1"]


@pytest.mark.slow
def test_two_thousand_vms_come_back_from_get_all_records(sim_factory):
    sim = sim_factory("--vms", "2000")
    records = sim.session().xenapi.VM.get_all_records()
    plain = [r for r in records.values() if not (r["is_a_template"] or r["is_control_domain"])]
    assert len(plain) == 2000
