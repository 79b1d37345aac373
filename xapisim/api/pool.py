"""pool, host, task and event calls."""

import time

from ..db import event_record, new_ref
from ..errors import XapiError
from ..records import CLASS_BY_LOWER
from ..xmlrpc import Timestamp
from .dispatch import new_task
from .registry import api


@api("pool.get_master")
def pool_get_master(call, pool):
    return call.db.get("pool", pool)["master"]


@api("pool.designate_new_master")
def pool_designate_new_master(call, host):
    call.db.get("host", host)
    call.sim.move_master(host)
    return ""


@api("host.get_address")
def host_get_address(call, host):
    return call.db.get("host", host)["address"]


@api("host.get_server_certificate")
def host_get_server_certificate(call, host):
    call.db.get("host", host)
    return call.sim.certificates[host][1]


@api("host.get_servertime")
def host_get_servertime(call, host):
    call.db.get("host", host)
    return Timestamp.now()


@api("host.get_server_localtime")
def host_get_server_localtime(call, host):
    call.db.get("host", host)
    return Timestamp.now()


@api("task.create")
def task_create(call, label, description):
    return new_task(call.sim, call.session, label, description)


@api("task.cancel")
def task_cancel(call, task):
    """Marks the task (xapi_task.ml cancel): ``cancel`` in its current_operations, status
    unchanged; the operation notices and fails with TASK_CANCELLED. A finished task is not
    refused (TaskHelper.cancel_this only logs)."""
    call.db.get("task", task)
    call.db.update("task", task, current_operations={call.task or new_ref(): "cancel"})
    if call.db.get("task", task)["status"] == "pending":
        call.sim.cancelled_tasks.add(task)
    return ""


@api("task.destroy")
def task_destroy(call, task):
    call.db.get("task", task)
    call.db.delete("task", task)
    return ""


@api("task.set_status")
def task_set_status(call, task, status):
    call.db.update("task", task, status=status)
    return ""


@api("task.set_progress")
def task_set_progress(call, task, progress):
    call.db.update("task", task, progress=float(progress))
    return ""


@api("task.set_result")
def task_set_result(call, task, result):
    call.db.update("task", task, result=result)
    return ""


@api("task.set_error_info")
def task_set_error_info(call, task, error_info):
    call.db.update("task", task, error_info=list(error_info))
    return ""


@api("task.get_result")
def task_get_result(call, task):
    return call.db.get("task", task)["result"]


# -- events -------------------------------------------------------------------------
def _parse_token(token: str) -> int:
    if token == "":
        return -1
    try:
        first, _, _ = token.partition(",")
        return int(first)
    except ValueError:
        raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None


def _parse_classes(classes) -> tuple[set | None, set | None]:
    """(classes, refs) from ["*"], ["vm", "task"] or ["vm/OpaqueRef:..."]."""
    names, refs = set(), set()
    for item in classes:
        if item == "*":
            return None, None
        cls, _, ref = item.partition("/")
        real = CLASS_BY_LOWER.get(cls.lower())
        if real is None:
            continue
        names.add(real)
        if ref:
            refs.add(ref)
    return names, (refs or None)


def _token(gen: int) -> str:
    return "%020d,%020d" % (gen, 0)


@api("event.from")
def event_from(call, classes, token, timeout):
    """Changes after ``token`` in the subscribed classes; waits up to ``timeout`` seconds
    for the first one (the db Condition wakes us as soon as anything changes)."""
    db = call.db
    since = _parse_token(token)
    names, refs = _parse_classes(classes)
    deadline = time.monotonic() + float(timeout)
    while True:
        if since < 0:
            events = _initial_dump(db, names, refs)
        else:
            events = db.changes_since(names, since, refs)
        gen = db.generation
        remaining = deadline - time.monotonic()
        if events or remaining <= 0:
            counts = {cls.lower(): len(db.all(cls)) for cls in (names or db.objects)}
            return {"events": events, "valid_ref_counts": counts, "token": _token(gen)}
        db.changed.wait(min(remaining, 5.0))


def _initial_dump(db, names, refs) -> list[dict]:
    events = []
    for cls, objs in db.objects.items():
        if names is not None and cls not in names:
            continue
        for ref, rec in objs.items():
            if refs is None or ref in refs:
                events.append(event_record(db.modified_at.get(ref, 0), cls, "add", ref, rec))
    return events


@api("event.get_current_id")
def event_get_current_id(call):
    return str(call.db.generation)

