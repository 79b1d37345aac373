"""Operations that take time on a real pool, and task cancellation as xapi does it.

Snapshots, checkpoints, shutdowns and the storage manager's coalesce take ``Config.timings``
seconds (small by default so tests stay fast; ``--timing snapshot=2`` or the control action
``set_timing`` makes them slow enough for time-outs and progress to be seen). While one runs,
the VM lists it in ``current_operations`` and the database lock is released, so other calls
are served and see the operation in progress.

``task.cancel`` (xapi_task.ml ``cancel``) only marks the task: it puts ``cancel`` in the
task's ``current_operations``; the status stays ``pending`` until the operation notices
(TaskHelper ``is_cancelling`` / ``exn_if_cancelling``) and fails with ``TASK_CANCELLED [task]``,
which makes the status ``cancelled``. Cancelling a finished task is not refused and changes
nothing (``cancel_this`` only logs).
"""

import time

from .db import new_ref
from .errors import XapiError

DEFAULTS = {"snapshot": 0.02, "checkpoint": 0.04, "shutdown": 0.02, "coalesce": 0.05}


def duration(sim, kind: str) -> float:
    return float(sim.config.timings.get(kind, DEFAULTS.get(kind, 0.0)))


def is_cancelling(sim, task: str | None) -> bool:
    return bool(task) and task in sim.cancelled_tasks


def raise_if_cancelling(sim, task: str | None) -> None:
    if is_cancelling(sim, task):
        raise XapiError("TASK_CANCELLED", task)


def take_time(call, kind: str, vm: str, op: str) -> None:
    """Let ``kind``'s duration pass with ``op`` in the VM's current_operations and the db lock
    released (callers hold it); the call's task shows progress and may be cancelled."""
    sim, db = call.sim, call.db
    seconds = duration(sim, kind)
    key = call.task or new_ref()   # xapi lists the operation under the call's task
    db.get("VM", vm)["current_operations"][key] = op
    db.touch("VM", vm)
    started = reported = time.monotonic()
    try:
        while True:
            raise_if_cancelling(sim, call.task)
            now = time.monotonic()
            elapsed = now - started
            if elapsed >= seconds:
                return
            if call.task and db.exists("task", call.task) and now - reported >= 0.1:
                reported = now
                db.update("task", call.task, progress=round(min(elapsed / seconds, 0.99), 4))
            db.changed.wait(min(seconds - elapsed, 0.1))   # releases the (re-entrant) db lock
    finally:
        if db.exists("VM", vm):
            db.get("VM", vm)["current_operations"].pop(key, None)
            db.touch("VM", vm)
