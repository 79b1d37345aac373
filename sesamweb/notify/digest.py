"""The daily digest: a VM x day matrix of the last 7 days of backup results, built from
the run events already recorded (so notify needs nothing from backups/)."""
from datetime import timedelta

from django.utils import timezone

from .choices import EventName, Severity
from .events import emit
from .models import Event

RUN_EVENTS = (EventName.RUN_SUCCEEDED, EventName.RUN_WARNING, EventName.RUN_FAILED)
# Worst first: a day with a failed and a good backup of a VM shows "failed".
_CELL = {"failed": "failed", "warning": "warning", "skipped": "skipped", "cancelled": "cancelled", "success": "ok"}
_ORDER = ["failed", "warning", "skipped", "cancelled", "ok"]


def digest_matrix(days: int = 7, now=None) -> dict:
    now = timezone.localtime(now or timezone.now())
    first_day = now.date() - timedelta(days=days - 1)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    day_list = [first_day + timedelta(days=n) for n in range(days)]
    cells: dict[str, dict] = {}
    for created, objects in Event.objects.filter(name__in=RUN_EVENTS, created__gte=start).values_list(
            "created", "about"):
        day = timezone.localtime(created).date()
        for vm in (objects or {}).get("vms") or []:
            name = vm.get("name") or vm.get("uuid") or "?"
            cell = _CELL.get(vm.get("status"), vm.get("status") or "")
            previous = cells.setdefault(name, {}).get(day)
            if previous is None or (cell in _ORDER and _ORDER.index(cell) < _ORDER.index(previous)):
                cells[name][day] = cell
    rows = [{"vm": name, "cells": [cells[name].get(day, "") for day in day_list]} for name in sorted(cells)]
    return {"days": [day.isoformat() for day in day_list], "rows": rows}


def send_daily_digest(now=None):
    matrix = digest_matrix(now=now)
    failed_vms = sum(1 for row in matrix["rows"] if "failed" in row["cells"])
    title = (f"Backup digest: {len(matrix['rows'])} VMs over 7 days"
             + (f", {failed_vms} with failures" if failed_vms else ", no failures"))
    return emit(EventName.DIGEST_DAILY, Severity.WARNING if failed_vms else Severity.INFO, title=title,
                details={"digest": matrix})
