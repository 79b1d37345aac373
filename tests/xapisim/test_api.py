"""The XML-RPC API through the real XenAPI client: login, errors, records, pool roles."""

import http.client
import xmlrpc.client

import pytest
import XenAPI


def login(url, password="demo"):
    session = XenAPI.Session(url, ignore_ssl=True)
    session.login_with_password("root", password, "2.21", "tests")
    return session


def vm_named(x, name):
    return x.VM.get_by_name_label(name)[0]


def test_it_logs_in_and_lists_the_pool(sim):
    session = login(sim.url)
    x = session.xenapi
    pool = x.pool.get_all()[0]
    master = x.pool.get_master(pool)
    assert x.host.get_address(master) == "127.0.0.1"
    assert len(x.host.get_all()) == 2
    assert session.API_version == "2.21"
    session.xenapi.session.logout()


def test_it_refuses_a_wrong_password(sim):
    with pytest.raises(XenAPI.Failure) as err:
        login(sim.url, "wrong")
    assert err.value.details == ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]


def test_a_member_answers_host_is_slave(sim):
    with pytest.raises(XenAPI.Failure) as err:
        login(sim.member_url(1))
    assert err.value.details == ["HOST_IS_SLAVE", "127.0.0.1"]


def test_it_serves_both_rpc_paths(sim):
    for url in (sim.url, sim.url + "/"):
        assert login(url).xenapi.pool.get_all()


def test_records_use_xapi_wire_types(sim):
    x = login(sim.url).xenapi
    records = x.VM.get_all_records()
    vm = vm_named(x, "test-vm-1")
    rec = records[vm]
    assert rec["memory_static_max"] == str(64 << 20)   # ints travel as strings
    assert rec["power_state"] == "Running"
    assert isinstance(rec["snapshot_time"], xmlrpc.client.DateTime)
    assert rec["snapshot_time"].value == "19700101T00:00:00Z"
    assert rec["snapshot_of"] == "OpaqueRef:NULL"
    assert rec["other_config"]["mac_seed"]
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_by_uuid(rec["uuid"]) == vm
    kinds = {(r["is_control_domain"], r["is_a_template"]) for r in records.values()}
    assert {(True, False), (False, True), (False, False)} <= kinds
    host = x.host.get_record(rec["resident_on"])
    assert vm in host["resident_VMs"]
    assert host["software_version"]["product_version"] == "8.3.0"


def test_guest_metrics_tell_windows_from_linux(sim):
    x = login(sim.url).xenapi
    oses = {x.VM_guest_metrics.get_os_version(x.VM.get_guest_metrics(vm_named(x, n))).get("distro")
            for n in ("test-vm-1", "test-vm-2")}
    assert oses == {"debian", "windows"}


def test_unknown_handles_and_uuids_are_reported(sim):
    x = login(sim.url).xenapi
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.get_record("OpaqueRef:nope")
    assert err.value.details == ["HANDLE_INVALID", "VM", "OpaqueRef:nope"]
    with pytest.raises(XenAPI.Failure) as err:
        x.VDI.get_by_uuid("0000")
    assert err.value.details == ["UUID_INVALID", "VDI", "0000"]


def test_unknown_methods_and_wrong_arity_are_reported(sim):
    session = login(sim.url)
    with pytest.raises(XenAPI.Failure) as err:
        session.xenapi.VM.fly()
    assert err.value.details == ["MESSAGE_METHOD_UNKNOWN", "VM.fly"]
    with pytest.raises(XenAPI.Failure) as err:
        session.xenapi.VM.get_record()
    assert err.value.details == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "2", "1"]
    assert "VM.snapshot" in xmlrpc.client.ServerProxy(sim.url).system.listMethods()["Value"]


def test_setters_change_records(sim):
    x = login(sim.url).xenapi
    vm = vm_named(x, "test-vm-2")
    x.VM.set_name_label(vm, "renamed & <escaped>")
    x.VM.add_to_other_config(vm, "backup", "daily")
    x.VM.add_tags(vm, "gold")
    x.VM.set_ha_restart_priority(vm, "restart")
    x.VM.set_memory_static_max(vm, str(128 << 20))
    rec = x.VM.get_record(vm)
    assert rec["name_label"] == "renamed & <escaped>"
    assert rec["other_config"]["backup"] == "daily"
    assert rec["tags"] == ["gold"]
    assert rec["ha_restart_priority"] == "restart"
    assert rec["memory_static_max"] == str(128 << 20)
    x.VM.remove_from_other_config(vm, "backup")
    x.VM.remove_tags(vm, "gold")
    rec = x.VM.get_record(vm)
    assert "backup" not in rec["other_config"] and rec["tags"] == []


def test_malformed_xml_gets_http_500(sim):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    conn.request("POST", "/", body=b"<methodCall><nope", headers={"Content-Type": "text/xml"})
    assert conn.getresponse().status == 500


def test_an_expired_session_is_renewed_by_the_client(sim):
    session = login(sim.url)
    old = session.handle
    assert sim.control.expire_sessions() >= 1
    assert session.xenapi.pool.get_all()  # SESSION_INVALID, then the client logs in again
    assert session.handle != old
    reply = xmlrpc.client.ServerProxy(sim.url).pool.get_all(old)
    assert reply == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", old]}


def test_an_idle_session_expires(sim):
    proxy = xmlrpc.client.ServerProxy(sim.url)
    ref = proxy.session.login_with_password("root", "demo")["Value"]
    assert proxy.pool.get_all(ref)["Status"] == "Success"
    sim.control.call("set_session_timeout", seconds=0)
    reply = proxy.pool.get_all(ref)
    assert reply == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", ref]}


def test_an_injected_failure_hits_the_next_call_only(sim):
    x = login(sim.url).xenapi
    vm = vm_named(x, "test-vm-1")
    sim.control.fail_next_call("VM.snapshot", ["SR_BACKEND_FAILURE_82", "", "timeout", ""])
    with pytest.raises(XenAPI.Failure) as err:
        x.VM.snapshot(vm, "first")
    assert err.value.details == ["SR_BACKEND_FAILURE_82", "", "timeout", ""]
    assert x.VM.get_is_a_snapshot(x.VM.snapshot(vm, "second"))
