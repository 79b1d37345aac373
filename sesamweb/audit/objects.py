"""What an audit row's object is, in words a person reads: "Restore run #12" with a link to
its page, not the internal label `backups.restorerun`.

For a page of events, one query per kind of object on the page loads the objects that still
exist (however long the log, the number of kinds is bounded by the models the console has);
an object that is gone keeps the name recorded with the event, without a link.
"""
from dataclasses import dataclass
from functools import lru_cache

from django.apps import apps
from django.core.exceptions import ValidationError
from django.urls import NoReverseMatch


@dataclass(frozen=True)
class AuditObject:
    kind: str  # "Data store", "Restore run", ...
    name: str  # as recorded with the event (what it was called then)
    url: str = ""  # its page, when it still exists and has one
    exists: bool = False


def model_for(target_type: str):
    if not target_type or "." not in target_type:
        return None
    try:
        return apps.get_model(target_type)
    except (LookupError, ValueError):
        return None


@lru_cache(maxsize=512)
def kind_label(target_type: str) -> str:
    model = model_for(target_type)
    if model is not None:
        name = str(model._meta.verbose_name)
        return name[:1].upper() + name[1:]
    # e.g. "audit.auditevent" of a model that is gone: the part after the dot
    return (target_type.rpartition(".")[2] or target_type).replace("_", " ").capitalize()


# The kinds of object people change (the object-kind filter offers these).
_KIND_APPS = ("accounts", "backups", "notify", "xenpools")
_KIND_EXTRA = ("auth.user", "auth.group")
_KIND_SKIP = ("accounts.loginfailure", "notify.condition", "notify.delivery", "notify.deliveryattempt",
              "notify.event")


def kind_choices() -> list[tuple[str, str]]:
    """(target_type, label) of the console's own models, for the object-kind filter."""
    types = [f"{m._meta.app_label}.{m._meta.model_name}" for m in apps.get_models()]
    choices = {t: kind_label(t) for t in types
               if (t.split(".")[0] in _KIND_APPS or t in _KIND_EXTRA) and t not in _KIND_SKIP}
    return sorted(choices.items(), key=lambda item: item[1].lower())


def _valid_ids(model, ids):
    field = model._meta.pk
    valid = set()
    for value in ids:
        try:
            valid.add(field.to_python(value))
        except (ValidationError, ValueError, TypeError):
            continue
    return valid


def _url(instance) -> str:
    try:
        return instance.get_absolute_url()
    except (AttributeError, NoReverseMatch):
        return ""


def describe(events) -> dict[int, AuditObject]:
    """{event pk: AuditObject} for the events given (one query per kind of object)."""
    ids_by_type: dict[str, set] = {}
    for event in events:
        if event.target_type and event.target_id:
            ids_by_type.setdefault(event.target_type, set()).add(event.target_id)
    found: dict[tuple[str, str], object] = {}
    for target_type, ids in ids_by_type.items():
        model = model_for(target_type)
        valid = _valid_ids(model, ids) if model is not None else set()
        if not valid:
            continue
        for pk, instance in model._base_manager.in_bulk(list(valid)).items():
            found[(target_type, str(pk))] = instance
    described = {}
    for event in events:
        if not event.target_type:
            continue
        instance = found.get((event.target_type, event.target_id))
        name = event.target_repr or (f"#{event.target_id}" if event.target_id else "")
        if instance is not None:
            described[event.pk] = AuditObject(kind_label(event.target_type), name, _url(instance), True)
        else:
            described[event.pk] = AuditObject(kind_label(event.target_type), name)
    return described
