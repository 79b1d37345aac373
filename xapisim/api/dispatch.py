"""One XML-RPC call from request bytes to response bytes: pool role, method lookup,
parameter count, session check, Async tasks, injected failures, the Status envelope."""

import threading
import time
import traceback

from .. import xmlrpc
from ..errors import XapiError
from ..xmlrpc import Timestamp
from .registry import Call, lookup
from .sessions import check_session

ASYNC = "Async."


def handle_xmlrpc(sim, host: str, body: bytes) -> bytes:
    """Raises ValueError on a malformed request (the server answers HTTP 500)."""
    method, params = xmlrpc.parse_request(body)
    with sim.db.lock:
        try:
            value = xmlrpc.success(call_method(sim, host, method, params))
        except XapiError as e:
            value = xmlrpc.failure(e.details)
        except Exception as e:  # a simulator bug: answer as xapi does for internal errors
            traceback.print_exc()
            value = xmlrpc.failure(["INTERNAL_ERROR", repr(e)])
        return xmlrpc.response(value)


def call_method(sim, host: str, method: str, params: tuple):
    injected = sim.faults.take_call_failure(method)
    if injected:
        raise XapiError(*injected)
    if method.startswith("system."):
        return _system(method)
    master = sim.master()
    if host != master:
        # A member serves no API calls: it points at the master (xapi_session.ml, session_check.ml).
        raise XapiError("HOST_IS_SLAVE", sim.db.get("host", master)["address"])
    is_async = method.startswith(ASYNC)
    name = method[len(ASYNC):] if is_async else method
    handler = lookup(name)
    if handler is None or (is_async and not handler.needs_session):
        raise XapiError("MESSAGE_METHOD_UNKNOWN", method)
    if not handler.required <= len(params) <= handler.maximum:
        raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", method, handler.required, len(params))
    session = None
    if handler.needs_session:
        session, params = params[0], params[1:]
        check_session(sim, session)
    call = Call(sim, session, host)
    if is_async:
        # A failure injected for the plain call fails its Async form through the task.
        injected = sim.faults.take_call_failure(name)
        fn = (lambda task_call: _raise(injected)) if injected else (lambda task_call: handler.fn(task_call, *params))
        return start_task(sim, call, name, fn)
    return handler.fn(call, *params)


def _raise(error: list):
    raise XapiError(*error)


def _system(method: str):
    from .registry import list_methods
    if method == "system.listMethods":
        return list_methods()
    raise XapiError("MESSAGE_METHOD_UNKNOWN", method)


def new_task(sim, session: str | None, label: str, description: str = "") -> str:
    return sim.db.create("task", name_label=label, name_description=description, created=Timestamp.now(),
                         resident_on=sim.master(), other_config={})


def finish_task(sim, task: str, result=None, error: list | None = None) -> None:
    """Complete a task as xapi's TaskHelper does: finished time, progress 1, no operations."""
    db = sim.db
    with db.lock:
        if not db.exists("task", task):
            return
        rec = db.get("task", task)
        if rec["status"] not in ("pending", "cancelling"):
            return
        sim.finished_tasks[task] = time.monotonic()
        sim.cancelled_tasks.discard(task)
        if error is not None:
            status = "cancelled" if error[0] == "TASK_CANCELLED" else "failure"
            db.update("task", task, status=status, error_info=[str(e) for e in error],
                      finished=Timestamp.now(), progress=1.0, allowed_operations=[])
        else:
            fragment = "" if result in (None, "") else xmlrpc.value_fragment(result)
            db.update("task", task, status="success", result=fragment, finished=Timestamp.now(),
                      progress=1.0, allowed_operations=[])


def start_task(sim, call: Call, label: str, work) -> str:
    """Run ``work(call)`` in a thread under the db lock; return the task ref at once."""
    task = new_task(sim, call.session, "Async." + label)
    task_call = Call(call.sim, call.session, call.host, task)

    def run():
        try:
            with sim.db.lock:
                result = work(task_call)
            finish_task(sim, task, result=result)
        except XapiError as e:
            finish_task(sim, task, error=e.details)
        except Exception as e:  # a simulator bug: report it the way xapi reports internal errors
            traceback.print_exc()
            finish_task(sim, task, error=["INTERNAL_ERROR", repr(e)])

    threading.Thread(target=run, name="task " + label, daemon=True).start()
    return task
