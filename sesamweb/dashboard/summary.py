"""The figures on the dashboard, read from whatever the installed apps hold.

The pools app and the backup engine are separate apps; the dashboard asks for their models
by name and shows an honest empty state ("No backups yet") when there is nothing to show,
rather than invented numbers.
"""
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Count, Q
from django.utils import timezone


def _model(label):
    try:
        return apps.get_model(label)
    except LookupError:
        return None


def _has_fields(model, *names):
    existing = {f.name for f in model._meta.get_fields()}
    return all(name in existing for name in names)


@dataclass
class Alert:
    level: str  # "danger" | "warn"
    title: str
    detail: str = ""
    url: str = ""


@dataclass
class Summary:
    pools_total: int = 0
    pools_healthy: int = 0
    pools_unhealthy: int = 0
    vms_total: int = 0
    vms_running: int = 0
    vms_halted: int = 0
    backups_available: bool = False       # the backup engine is installed
    vms_protected: int | None = None      # VMs with at least one good backup
    runs_24h: dict = field(default_factory=dict)  # status -> count
    runs_24h_hourly: list = field(default_factory=list)  # [{"label": "14:00", "value": n}]
    alerts: list = field(default_factory=list)

    def as_json(self):
        return asdict(self)

    @property
    def runs_24h_total(self):
        return sum(self.runs_24h.values())

    @property
    def runs_24h_items(self):
        """[(label, count, badge tone)] in a stable order, for display."""
        labels = dict(_run_status_choices())
        tones = {"success": "ok", "warning": "warn", "failed": "danger", "running": "info", "queued": "info"}
        return [(labels.get(status, status), count, tones.get(status, "muted"))
                for status, count in sorted(self.runs_24h.items())]


def _run_status_choices():
    Run = _model("backups.BackupRun")
    if Run is None:
        return []
    try:
        return Run._meta.get_field("status").choices or []
    except FieldDoesNotExist:
        return []


def _pool_figures(summary):
    Pool = _model("xenpools.Pool")
    if Pool is None:
        return
    pools = list(Pool.objects.all())
    summary.pools_total = len(pools)
    for pool in pools:
        healthy = getattr(pool, "health", "healthy") == "healthy"
        summary.pools_healthy += healthy
        if not healthy:
            summary.pools_unhealthy += 1
            get_url = getattr(pool, "get_absolute_url", None)
            health_label = pool.get_health_display() if hasattr(pool, "get_health_display") else "unhealthy"
            summary.alerts.append(Alert(
                "danger" if getattr(pool, "health", "") != "unknown" else "warn",
                f"Pool {pool}: {health_label}",
                getattr(pool, "last_error", "") or "",
                get_url() if get_url else "",
            ))


def _vm_figures(summary):
    VM = _model("xenpools.VM")
    if VM is None:
        return
    vms = VM.objects.all()
    if _has_fields(VM, "removed_at"):
        vms = vms.filter(removed_at__isnull=True)
    if _has_fields(VM, "is_snapshot"):
        vms = vms.filter(is_snapshot=False)
    counts = vms.aggregate(total=Count("id"), running=Count("id", filter=Q(power_state="Running")),
                           halted=Count("id", filter=Q(power_state="Halted")))
    summary.vms_total, summary.vms_running, summary.vms_halted = counts["total"], counts["running"], counts["halted"]


def _backup_figures(summary, now):
    Run = _model("backups.BackupRun")
    if Run is None or not _has_fields(Run, "status"):
        return
    summary.backups_available = True
    time_field = next((name for name in ("started", "started_at", "created") if _has_fields(Run, name)), None)
    if time_field is None:
        return
    since = now - timedelta(hours=24)
    recent = Run.objects.filter(**{f"{time_field}__gte": since})
    summary.runs_24h = dict(recent.values_list("status").annotate(n=Count("id")).order_by())
    hourly = [0] * 24
    for started in recent.values_list(time_field, flat=True):
        hourly[min(23, int((started - since).total_seconds() // 3600))] += 1
    summary.runs_24h_hourly = [
        {"label": timezone.localtime(since + timedelta(hours=i + 1)).strftime("%H:00"), "value": v}
        for i, v in enumerate(hourly)
    ]
    VmBackup = _model("backups.VmBackup") or _model("backups.RestorePoint")
    if VmBackup is not None and _has_fields(VmBackup, "vm"):
        summary.vms_protected = VmBackup.objects.values("vm").distinct().count()


def dashboard_summary(now=None) -> Summary:
    summary = Summary()
    _pool_figures(summary)
    _vm_figures(summary)
    _backup_figures(summary, now or timezone.now())
    return summary
