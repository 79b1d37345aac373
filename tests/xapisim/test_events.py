"""event.from through the real client: initial dump, tokens, class filters, waking waiters."""

import re
import threading

import pytest
import XenAPI


def event_from(session, classes, token, timeout):
    return session.xenapi_request("event.from", (classes, token, timeout))


def test_the_first_call_dumps_every_object_with_a_token(sim):
    session = sim.session()
    reply = event_from(session, ["*"], "", 1.0)
    assert re.fullmatch(r"\d{20},\d{20}", reply["token"])
    classes = {e["class"] for e in reply["events"]}
    assert {"vm", "vdi", "host", "pool", "sr", "network"} <= classes
    assert all(e["operation"] == "add" for e in reply["events"])
    vm_events = [e for e in reply["events"] if e["class"] == "vm"]
    assert int(reply["valid_ref_counts"]["vm"]) == len(vm_events)
    assert all("power_state" in e["snapshot"] for e in vm_events)


def test_class_filters_are_case_insensitive(sim):
    session = sim.session()
    reply = event_from(session, ["VM"], "", 1.0)
    assert {e["class"] for e in reply["events"]} == {"vm"}


def test_a_waiting_client_receives_a_power_state_change(sim):
    session, other = sim.session(), sim.session()
    x = session.xenapi
    vm = x.VM.get_by_name_label("test-vm-2")[0]
    token = event_from(session, ["vm"], "", 1.0)["token"]
    result = {}

    def wait():
        result["reply"] = event_from(other, ["vm"], token, 30.0)

    waiter = threading.Thread(target=wait)
    waiter.start()
    x.VM.start(vm, False, False)
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    changes = [e for e in result["reply"]["events"] if e["ref"] == vm]
    assert changes and changes[-1]["operation"] == "mod"
    assert changes[-1]["snapshot"]["power_state"] == "Running"
    assert result["reply"]["token"] > token


def test_a_quiet_pool_returns_no_events_after_the_timeout(sim):
    session = sim.session()
    token = event_from(session, ["vm"], "", 1.0)["token"]
    reply = event_from(session, ["vm"], token, 0.3)
    assert reply["events"] == []


def test_deleted_objects_are_reported(sim):
    session = sim.session()
    x = session.xenapi
    vm = x.VM.get_by_name_label("test-vm-4")[0]
    token = event_from(session, ["vm"], "", 1.0)["token"]
    x.VM.destroy(vm)
    reply = event_from(session, ["vm"], token, 5.0)
    assert [(e["ref"], e["operation"]) for e in reply["events"] if e["ref"] == vm] == [(vm, "del")]


def test_task_events_follow_async_calls(sim):
    session = sim.session()
    x = session.xenapi
    token = event_from(session, ["task"], "", 1.0)["token"]
    task = x.Async.VM.snapshot(x.VM.get_by_name_label("test-vm-1")[0], "async")
    statuses = []
    while "success" not in statuses:
        reply = event_from(session, ["task"], token, 10.0)
        token = reply["token"]
        statuses += [e["snapshot"]["status"] for e in reply["events"] if e["ref"] == task]
        assert reply["events"], "no task event"
    assert statuses[-1] == "success"


def test_a_malformed_token_is_refused(sim):
    with pytest.raises(XenAPI.Failure) as err:
        event_from(sim.session(), ["vm"], "garbage", 1.0)
    assert err.value.details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]
