"""The figures on the dashboard, read from the pools app and the backup engine.

Their models are looked up by name, so the dashboard still renders while an app is absent
or not migrated yet; empty states are shown honestly ("No backups yet") rather than
invented numbers.
"""
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Count, Q, Sum
from django.urls import NoReverseMatch
from django.utils import timezone


def _model(label):
    try:
        return apps.get_model(label)
    except LookupError:
        return None


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
    runs_active: int = 0                  # queued or running now
    running: list = field(default_factory=list)       # VM backups in progress
    running_runs: list = field(default_factory=list)  # their run ids (the page follows "run:<id>")
    restore_points: int = 0
    bytes_stored: int = 0                 # after dedup and compression
    bytes_covered: int = 0                # disk bytes those restore points cover
    alerts: list = field(default_factory=list)

    def as_json(self):
        return asdict(self)

    @property
    def space_saving(self):
        """How many disk bytes each stored byte covers (dedup x compression), or None."""
        return round(self.bytes_covered / self.bytes_stored, 1) if self.bytes_stored else None

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
    for pool in Pool.objects.all():
        summary.pools_total += 1
        if pool.health == "healthy":
            summary.pools_healthy += 1
            continue
        summary.pools_unhealthy += 1
        level = "warn" if pool.health == "unknown" else "danger"
        summary.alerts.append(Alert(level, f"Pool {pool}: {pool.get_health_display()}", pool.last_error,
                                    pool.get_absolute_url()))


def _vm_figures(summary):
    VM = _model("xenpools.VM")
    if VM is None:
        return
    vms = VM.objects.filter(removed_at__isnull=True, is_snapshot=False)
    counts = vms.aggregate(total=Count("id"), running=Count("id", filter=Q(power_state="Running")),
                           halted=Count("id", filter=Q(power_state="Halted")))
    summary.vms_total, summary.vms_running, summary.vms_halted = counts["total"], counts["running"], counts["halted"]


def _backup_figures(summary, now):
    Run, VmBackup, RestorePoint = _model("backups.BackupRun"), _model("backups.VmBackup"), _model("backups.RestorePoint")
    if Run is None or VmBackup is None or RestorePoint is None:
        return
    summary.backups_available = True
    since = now - timedelta(hours=24)
    recent = Run.objects.filter(created_at__gte=since)
    summary.runs_24h = dict(recent.values_list("status").annotate(n=Count("id")).order_by())
    hourly = [0] * 24
    for created in recent.values_list("created_at", flat=True):
        hourly[min(23, int((created - since).total_seconds() // 3600))] += 1
    summary.runs_24h_hourly = [
        {"label": timezone.localtime(since + timedelta(hours=i + 1)).strftime("%H:00"), "value": v}
        for i, v in enumerate(hourly)
    ]
    summary.runs_active = Run.objects.filter(status__in=("queued", "running")).count()
    for vm_backup in VmBackup.objects.filter(status="running").order_by("started_at", "id")[:8]:
        summary.running.append({
            "run": vm_backup.run_id,
            "vm_name": vm_backup.vm_name,
            "phase": vm_backup.get_phase_display(),
            "percent": round(vm_backup.progress * 100),
            "url": vm_backup.get_absolute_url() if _reverses(vm_backup) else "",
        })
    summary.running_runs = sorted({item["run"] for item in summary.running})

    protected = set(RestorePoint.objects.values_list("vm_uuid", flat=True).distinct())
    VM = _model("xenpools.VM")
    if VM is not None:
        uuids = VM.objects.filter(removed_at__isnull=True, is_snapshot=False).values_list("uuid", flat=True)
        summary.vms_protected = sum(1 for uuid in uuids if uuid in protected)
    totals = RestorePoint.objects.aggregate(points=Count("id"), stored=Sum("bytes_stored"), covered=Sum("virtual_size"))
    summary.restore_points = totals["points"]
    summary.bytes_stored = totals["stored"] or 0
    summary.bytes_covered = totals["covered"] or 0
    for failed in VmBackup.objects.filter(status="failed", created_at__gte=since).order_by("-created_at")[:5]:
        summary.alerts.append(Alert("danger", f"Backup of {failed.vm_name} failed", failed.error[:300],
                                    failed.get_absolute_url() if _reverses(failed) else ""))


def _reverses(instance) -> bool:
    """True if the instance's page exists (the backup pages may not be wired yet)."""
    try:
        instance.get_absolute_url()
        return True
    except NoReverseMatch:
        return False


def dashboard_summary(now=None) -> Summary:
    summary = Summary()
    _pool_figures(summary)
    _vm_figures(summary)
    _backup_figures(summary, now or timezone.now())
    return summary
