"""The method table: explicit handlers registered with ``@api``, and the generic
accessors every class gets (get_record, get_all, get_<field>, set_<field>, ...)."""

import inspect
from dataclasses import dataclass
from typing import Callable

from ..errors import XapiError
from ..records import TEMPLATES


@dataclass
class Call:
    """What a handler knows about the call it serves."""
    sim: object
    session: str | None
    host: str             # ref of the host that received the call
    task: str | None = None

    @property
    def db(self):
        return self.sim.db


@dataclass
class Method:
    fn: Callable
    required: int         # wire params, session included when needs_session
    maximum: int
    needs_session: bool


METHODS: dict[str, Method] = {}


def api(name: str, *, session: bool = True):
    def register(fn):
        params = list(inspect.signature(fn).parameters.values())[1:]  # drop `call`
        required = sum(1 for p in params if p.default is inspect.Parameter.empty)
        extra = 1 if session else 0
        METHODS[name] = Method(fn, required + extra, len(params) + extra, session)
        return fn
    return register


# Fields a client may set directly, as xapi's datamodel allows (RW fields).
SETTABLE = {
    "name_label", "name_description", "other_config", "tags", "xenstore_data", "sm_config",
    "blocked_operations", "platform", "HVM_boot_params", "HVM_boot_policy", "affinity",
    "ha_restart_priority", "ha_always_run", "memory_static_max", "memory_static_min", "memory_dynamic_max",
    "memory_dynamic_min", "memory_target", "VCPUs_max", "VCPUs_at_startup", "VCPUs_params",
    "is_a_template", "suspend_SR", "on_boot", "sharable", "read_only", "purpose", "MTU", "default_SR",
    "bootable", "mode", "userdevice", "PV_args", "PV_bootloader", "actions_after_shutdown",
    "actions_after_reboot", "actions_after_crash", "domain_type", "HVM_shadow_multiplier", "order",
    "start_delay", "shutdown_delay", "bios_strings", "NVRAM", "suspend_image_SR", "crash_dump_SR",
    "logging", "device_config", "unpluggable", "gui_config", "recommendations", "allow_caching",
    "physical_size", "locking_mode",
}
# Fields with dedicated operations in xapi rather than a plain setter.
NOT_SETTABLE = {"VDI": {"sharable", "read_only", "on_boot"}}


def _coerce(template_value, value):
    # Clients send ints as strings (that is the wire type of int).
    if isinstance(template_value, bool):
        return bool(value)
    if isinstance(template_value, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise XapiError("FIELD_TYPE_ERROR", str(value)) from None
    if isinstance(template_value, float):
        return float(value)
    return value


def generic(name: str) -> Method | None:
    """A Method for ``Class.accessor`` names no handler claims, or None."""
    cls, _, op = name.partition(".")
    if cls not in TEMPLATES or not op:
        return None
    fields = TEMPLATES[cls]
    db_get = lambda call, ref: call.db.get(cls, ref)  # noqa: E731

    if op == "get_record":
        return Method(lambda call, ref: db_get(call, ref), 2, 2, True)
    if op == "get_all":
        return Method(lambda call: list(call.db.all(cls)), 1, 1, True)
    if op == "get_all_records":
        return Method(lambda call: call.db.all(cls), 1, 1, True)
    if op == "get_by_uuid":
        return Method(lambda call, uuid: call.db.ref_of_uuid(cls, uuid), 2, 2, True)
    if op == "get_by_name_label" and "name_label" in fields:
        return Method(lambda call, label: call.db.find(cls, name_label=label), 2, 2, True)
    if op == "get_uuid":
        return Method(lambda call, ref: db_get(call, ref)["uuid"], 2, 2, True)
    if op.startswith("get_") and op[4:] in fields:
        field = op[4:]
        return Method(lambda call, ref: db_get(call, ref)[field], 2, 2, True)
    if op.startswith("set_") and op[4:] in fields and op[4:] in SETTABLE and op[4:] not in NOT_SETTABLE.get(cls, ()):
        field = op[4:]

        def setter(call, ref, value):
            db_get(call, ref)
            if isinstance(fields[field], dict):
                value = {str(k): str(v) for k, v in value.items()}
            call.db.update(cls, ref, **{field: _coerce(fields[field], value)})
            return ""
        return Method(setter, 3, 3, True)
    if op.startswith("add_to_") and isinstance(fields.get(op[7:]), dict):
        field = op[7:]

        def add_to_map(call, ref, key, value):
            rec = db_get(call, ref)
            if key in rec[field]:
                raise XapiError("MAP_DUPLICATE_KEY", cls, field, ref, key)
            rec[field][key] = value
            call.db.touch(cls, ref)
            return ""
        return Method(add_to_map, 4, 4, True)
    if op.startswith("remove_from_") and isinstance(fields.get(op[12:]), dict):
        field = op[12:]

        def remove_from_map(call, ref, key):
            rec = db_get(call, ref)
            if rec[field].pop(key, None) is not None:
                call.db.touch(cls, ref)
            return ""
        return Method(remove_from_map, 3, 3, True)
    for verb in ("add_", "remove_"):
        if op.startswith(verb) and isinstance(fields.get(op[len(verb):]), list) and op[len(verb):] in SETTABLE:
            field = op[len(verb):]
            if verb == "add_":
                return Method(lambda call, ref, item: (db_get(call, ref), call.db.add_to(cls, ref, field, item), "")[2], 3, 3, True)
            return Method(lambda call, ref, item: (db_get(call, ref), call.db.remove_from(cls, ref, field, item), "")[2], 3, 3, True)
    return None


def lookup(name: str) -> Method | None:
    return METHODS.get(name) or generic(name)


def list_methods() -> list[str]:
    names = set(METHODS)
    for cls, fields in TEMPLATES.items():
        names.update("%s.%s" % (cls, op) for op in ("get_record", "get_all", "get_all_records", "get_by_uuid"))
        if "name_label" in fields:
            names.add(cls + ".get_by_name_label")
        for field, default in fields.items():
            names.add("%s.get_%s" % (cls, field))
            if field in SETTABLE:
                names.add("%s.set_%s" % (cls, field))
            if isinstance(default, dict):
                names.update(("%s.add_to_%s" % (cls, field), "%s.remove_from_%s" % (cls, field)))
    return sorted(names)

