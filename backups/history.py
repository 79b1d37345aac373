"""One task history: backup runs and restores together, newest first, filtered alike.

The two tables are merged in the database (a UNION of (kind, id, created_at)), so a page of
50 costs the same with a million rows; the page's rows are then loaded from their own tables.
"""
from dataclasses import dataclass

from django.db.models import CharField, Q, Value

from .models import BackupRun, RestoreRun

KINDS = [("", "All"), ("backup", "Backups"), ("restore", "Restores")]


@dataclass
class HistoryFilter:
    kind: str = ""
    status: str = ""
    vm: str = ""
    since: object = None      # date
    until: object = None

    def backups(self):
        runs = BackupRun.objects.all()
        if self.status:
            runs = runs.filter(status=self.status)
        if self.vm:
            runs = runs.filter(pk__in=BackupRun.objects.filter(
                Q(vm_backups__vm_name__icontains=self.vm) | Q(vm_backups__vm_uuid__istartswith=self.vm)).values("pk"))
        return self._dates(runs)

    def restores(self):
        runs = RestoreRun.objects.all()
        if self.status:
            runs = runs.filter(status=self.status)
        if self.vm:
            runs = runs.filter(Q(source_vm_name__icontains=self.vm) | Q(source_vm_uuid__istartswith=self.vm))
        return self._dates(runs)

    def _dates(self, runs):
        if self.since:
            runs = runs.filter(created_at__date__gte=self.since)
        if self.until:
            runs = runs.filter(created_at__date__lte=self.until)
        return runs


def history(flt: HistoryFilter):
    """A queryset of {"task_kind", "id", "created_at"} rows, newest first (paginate it, then load_page)."""
    parts = []
    if flt.kind in ("", "backup"):
        parts.append(flt.backups().annotate(task_kind=Value("backup", output_field=CharField()))
                     .values("task_kind", "id", "created_at").order_by())
    if flt.kind in ("", "restore"):
        parts.append(flt.restores().annotate(task_kind=Value("restore", output_field=CharField()))
                     .values("task_kind", "id", "created_at").order_by())
    merged = parts[0] if len(parts) == 1 else parts[0].union(parts[1], all=True)
    return merged.order_by("-created_at", "-id")


def load_page(rows):
    """The BackupRun / RestoreRun objects of one page of history rows, in the page's order."""
    rows = list(rows)
    backups = {run.pk: run for run in BackupRun.objects.filter(pk__in=[r["id"] for r in rows if r["task_kind"] == "backup"])
               .select_related("job", "requested_by").prefetch_related("vm_backups")}
    restores = {run.pk: run for run in RestoreRun.objects.filter(pk__in=[r["id"] for r in rows if r["task_kind"] == "restore"])
                .select_related("target_pool", "requested_by")}
    items = []
    for row in rows:
        run = (backups if row["task_kind"] == "backup" else restores).get(row["id"])
        if run is not None:
            items.append({"kind": row["task_kind"], "run": run})
    return items
