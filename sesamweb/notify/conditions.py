"""Lasting states reported once per crossing, not at every check.

    notify.conditions.begin("store:3:unreachable", "store.unreachable", "critical", title=..., objects=...)
    notify.conditions.end("store:3:unreachable")

begin() emits the event only when it turns the condition on (a conditional UPDATE, so two
workers checking at once report it once); end() turns it off, so the next begin() reports
again. Checks may call them as often as they like."""
from django.db import transaction
from django.utils import timezone

from .events import emit
from .models import Condition


def begin(key: str, name: str, severity: str, *, title: str, objects=None, details=None):
    """Report `name` if the condition `key` was not already on; returns the Event or None."""
    now = timezone.now()
    Condition.objects.get_or_create(key=key)
    with transaction.atomic():
        turned_on = Condition.objects.filter(key=key, active=False).update(active=True, since=now, ended=None,
                                                                           detail=title[:2000])
        if not turned_on:
            return None
        return emit(name, severity, title=title, objects=objects, details=details)


def end(key: str) -> bool:
    """The condition is over (True if it was on)."""
    return bool(Condition.objects.filter(key=key, active=True).update(active=False, ended=timezone.now()))


def is_active(key: str) -> bool:
    return Condition.objects.filter(key=key, active=True).exists()
