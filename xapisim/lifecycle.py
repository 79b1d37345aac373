"""Whether a VM operation may start, checked in xapi's order (xapi_vm_lifecycle.ml
``check_operation_error``): blocked operation, power state, operations in progress, template,
snapshot, control domain. The first failing check gives the error.

- ``VM_BAD_POWER_STATE [vm, expected, actual]``: the states the operation accepts, lowercase,
  joined with ", " in xapi's order (``report_power_state_error``), e.g. checkpoint on a halted
  VM gives ``[vm, "paused, suspended, running", "halted"]``. (The ";"-joined form comes only
  from ``assert_initial_power_state_in``, which the calls served here never reach first.)
- ``VM_IS_TEMPLATE [vm, op]`` and ``VM_IS_SNAPSHOT [vm, op]``: the operation name is the
  second parameter (``check_template``, ``check_snapshot``).
- ``OTHER_OPERATION_IN_PROGRESS ["VM", vm, op, task]``: unless every operation in progress and
  the new one are long copies (clone, copy, export) or snapshots (snapshot, checkpoint), or the
  new one is a hard_shutdown (``is_allowed_concurrently``).
"""

from .errors import XapiError

ALL = ("halted", "paused", "suspended", "running")

# allowed_power_states, in xapi's order (the order the error message lists them).
_POWER_STATES = {
    "start": ("halted",), "start_on": ("halted",), "provision": ("halted",),
    "make_into_template": ("halted",), "changing_VCPUs": ("halted",),
    "changing_static_range": ("halted",), "changing_memory_limits": ("halted",),
    "unpause": ("paused",),
    "resume": ("suspended",), "resume_on": ("suspended",),
    "clean_reboot": ("running",), "clean_shutdown": ("running",), "pause": ("running",),
    "suspend": ("running",), "snapshot_with_quiesce": ("running",),
    "changing_VCPUs_live": ("running",),
    "changing_dynamic_range": ("halted", "running"),
    "destroy": ("halted", "suspended"), "export": ("halted", "suspended"),
    "hard_reboot": ("paused", "running"),
    "checkpoint": ("paused", "suspended", "running"), "shutdown": ("paused", "suspended", "running"),
    "hard_shutdown": ("paused", "suspended", "running"),
}
# check_snapshot and check_template: what snapshots and (non-default) templates may do.
_SNAPSHOT_OPS = {"revert", "clone", "copy", "export", "destroy", "hard_shutdown", "metadata_export"}
_TEMPLATE_OPS = {"changing_dynamic_range", "changing_static_range", "changing_memory_limits",
                 "changing_shadow_memory", "changing_VCPUs", "changing_NVRAM", "clone", "copy",
                 "export", "metadata_export", "provision"}
_CONCURRENT_GROUPS = ({"clone", "copy", "export"}, {"snapshot", "checkpoint"})
_CONTROL_DOMAIN_OPS = {"metadata_export", "changing_dynamic_range", "changing_memory_limits",
                       "changing_static_range", "start", "start_on", "changing_VCPUs", "destroy"}


def allowed_power_states(rec: dict, op: str) -> tuple:
    if op in ("clone", "copy"):
        return ("halted", "suspended") if rec["is_a_snapshot"] else ("halted",)
    return _POWER_STATES.get(op, ALL)


def check_operation(db, vm: str, op: str) -> dict:
    """Raise the error xapi gives when ``op`` may not start on ``vm``; return the record."""
    rec = db.get("VM", vm)
    if op in rec["blocked_operations"]:
        raise XapiError("OPERATION_BLOCKED", vm, rec["blocked_operations"][op])
    expected = allowed_power_states(rec, op)
    actual = rec["power_state"].lower()
    if actual not in expected:
        raise XapiError("VM_BAD_POWER_STATE", vm, ", ".join(expected), actual)
    current = rec["current_operations"]
    if current and not _concurrent(op, list(current.values())):
        task, other = next(iter(current.items()))
        raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm, other, task)
    if rec["is_a_template"] and not rec["is_a_snapshot"]:
        default = rec["is_default_template"] or rec["other_config"].get("default_template") in ("1", "true")
        if op not in _TEMPLATE_OPS and not (op == "destroy" and not default):
            raise XapiError("VM_IS_TEMPLATE", vm, op)
    if rec["is_a_snapshot"] and op not in _SNAPSHOT_OPS:
        raise XapiError("VM_IS_SNAPSHOT", vm, op)
    if rec["is_control_domain"] and op not in _CONTROL_DOMAIN_OPS:
        raise XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on a control domain")
    return rec


def _concurrent(op: str, ops: list) -> bool:
    if op == "hard_shutdown":
        return "hard_shutdown" not in ops
    if op == "hard_reboot":
        return not {"hard_shutdown", "hard_reboot"} & set(ops)
    return any(op in group and all(o in group for o in ops) for group in _CONCURRENT_GROUPS)
