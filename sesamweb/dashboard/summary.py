"""The figures on the dashboard, read from the pools app and the backup engine.

Empty states are shown honestly ("No backups yet") rather than invented numbers.
"""
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.db.models import Count, Max, OuterRef, Q, Subquery, Sum
from django.urls import reverse
from django.utils import timezone
from django.urls import reverse
from django.utils.timesince import timesince, timeuntil

from backups.choices import RunStatus, VerifyState
from backups.jobs.protection import counts_per_pool, protection_map
from backups.models import BackupJob, BackupRun, JobSchedule, ReplicationPolicy, RestorePoint, StoreMaintenanceSchedule, VmBackup
from backups.restore.replication import replication_status
from xenpools.choices import PowerState
from xenpools.models import VM, Pool


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
    backups_available: bool = False       # at least one backup was ever requested
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
    replication_policies: int = 0
    replication: list = field(default_factory=list)   # per policy and VM: the latest replica
    jobs_total: int = 0
    protection_pools: list = field(default_factory=list)  # per pool: protected / at risk / unprotected
    protection_chart: list = field(default_factory=list)  # the totals, for the bar chart
    next_runs: list = field(default_factory=list)         # the next scheduled runs, soonest first
    failed_jobs: list = field(default_factory=list)       # jobs whose last run failed

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
        labels = dict(RunStatus.choices)
        tones = {RunStatus.SUCCESS: "ok", RunStatus.WARNING: "warn", RunStatus.FAILED: "danger",
                 RunStatus.RUNNING: "info", RunStatus.QUEUED: "info"}
        return [(labels.get(status, status), count, tones.get(status, "muted"))
                for status, count in sorted(self.runs_24h.items())]


def _pool_figures(summary):
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
    vms = VM.objects.filter(removed_at__isnull=True, is_snapshot=False)
    counts = vms.aggregate(total=Count("id"), running=Count("id", filter=Q(power_state=PowerState.RUNNING)),
                           halted=Count("id", filter=Q(power_state=PowerState.HALTED)))
    summary.vms_total, summary.vms_running, summary.vms_halted = counts["total"], counts["running"], counts["halted"]


def _backup_figures(summary, now):
    summary.backups_available = BackupRun.objects.exists()
    since = now - timedelta(hours=24)
    recent = BackupRun.objects.filter(created_at__gte=since)
    summary.runs_24h = dict(recent.values_list("status").annotate(n=Count("id")).order_by())
    hourly = [0] * 24
    for created in recent.values_list("created_at", flat=True):
        hourly[min(23, int((created - since).total_seconds() // 3600))] += 1
    summary.runs_24h_hourly = [
        {"label": timezone.localtime(since + timedelta(hours=i + 1)).strftime("%H:00"), "value": v}
        for i, v in enumerate(hourly)
    ]
    summary.runs_active = BackupRun.objects.filter(status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).count()
    for vm_backup in VmBackup.objects.filter(status=RunStatus.RUNNING).order_by("started_at", "id")[:8]:
        summary.running.append({
            "run": vm_backup.run_id,
            "vm_name": vm_backup.vm_name,
            "phase": vm_backup.get_phase_display(),
            "percent": round(vm_backup.progress * 100),
            "url": vm_backup.get_absolute_url(),
        })
    summary.running_runs = sorted({item["run"] for item in summary.running})

    # Protected: the VM has a restore point that is not known to be damaged.
    good = RestorePoint.objects.exclude(verify_state=VerifyState.DAMAGED).values("vm_uuid")
    summary.vms_protected = (VM.objects.filter(removed_at__isnull=True, is_snapshot=False, uuid__in=good)
                             .values("uuid").distinct().count())
    totals = RestorePoint.objects.aggregate(points=Count("id"), stored=Sum("bytes_stored"), covered=Sum("virtual_size"))
    summary.restore_points = totals["points"]
    summary.bytes_stored = totals["stored"] or 0
    summary.bytes_covered = totals["covered"] or 0
    for failed in VmBackup.objects.filter(status=RunStatus.FAILED, created_at__gte=since).order_by("-created_at")[:5]:
        summary.alerts.append(Alert("danger", f"Backup of {failed.vm_name} failed", failed.error[:300],
                                    failed.get_absolute_url()))


def _store_figures(summary):
    """Damaged restore points (found by a verify, scheduled or not) and scheduled maintenance
    that failed: each store's problem is an alert until it is dealt with."""
    damaged = (RestorePoint.objects.filter(verify_state=VerifyState.DAMAGED)
               .values("store_id", "store__name")
               .annotate(points=Count("id"), vms=Count("vm_uuid", distinct=True), found=Max("verified_at"))
               .order_by("store__name"))
    for row in damaged:
        found = f", found by verify on {timezone.localtime(row['found']):%Y-%m-%d %H:%M}" if row["found"] else ""
        summary.alerts.append(Alert(
            "danger", f"{row['points']} damaged restore point(s) on {row['store__name']}",
            f"{row['vms']} VM(s) affected{found}; back them up again and run garbage collection",
            reverse("backups:point_list") + f"?store={row['store_id']}&verify_state={VerifyState.DAMAGED}"))
    failed = (StoreMaintenanceSchedule.objects.filter(enabled=True, last_ok=False).select_related("store")
              .exclude(action="verify", last_result__contains="damaged"))
    for maintenance in failed:
        summary.alerts.append(Alert("warn", f"Scheduled {maintenance.get_action_display().lower()} of "
                                            f"{maintenance.store.name} failed", maintenance.last_result[:300],
                                    maintenance.store.get_absolute_url() + "#maintenance-schedules"))


def _notification_figures(summary):
    """A channel whose messages do not get through is itself an alert: failures would go unheard."""
    from sesamweb.notify.delivery import failing_channels

    for channel in failing_channels():
        summary.alerts.append(Alert("danger", f"Notification channel {channel.name} is failing",
                                    channel.last_error[:300], channel.get_absolute_url()))


def _replication_figures(summary):
    summary.replication_policies = ReplicationPolicy.objects.count()
    tones = {RunStatus.SUCCESS: "ok", RunStatus.WARNING: "warn", RunStatus.FAILED: "danger",
             RunStatus.RUNNING: "info", RunStatus.QUEUED: "info"}
    for row in replication_status():
        run = row["last_run"]
        summary.replication.append({
            "policy": row["policy"].name, "vm_name": row["vm_name"], "target_pool": str(row["target_pool"]),
            "state": run.get_status_display(), "tone": tones.get(run.status, "muted"),
            "url": run.get_absolute_url(), "error": run.error[:200],
            "age": f"{timesince(row['last_replica_at'])} ago" if row["last_replica_at"] else "",
        })
        if run.status == RunStatus.FAILED:
            summary.alerts.append(Alert("danger", f"Replication of {row['vm_name']} failed", run.error[:300],
                                        run.get_absolute_url()))


def _job_figures(summary, now):
    """Protection per pool (RPO met / at risk / in no job), the next runs, the failed jobs."""
    summary.jobs_total = BackupJob.objects.count()
    counts = counts_per_pool(protection_map(now=now, include_deleted=False))
    vm_list = reverse("xenpools:vm_list")
    totals = {"protected": 0, "at_risk": 0, "unprotected": 0}
    for pool in Pool.objects.filter(pk__in=counts).order_by("name"):
        row = counts[pool.pk]
        for key in totals:
            totals[key] += row[key]
        summary.protection_pools.append({
            "pool": pool.name, **row,
            **{f"{key}_url": f"{vm_list}?pool={pool.pk}&protection={status}"
               for key, status in (("protected", "met"), ("at_risk", "at_risk"), ("unprotected", "unprotected"))},
        })
    if counts:
        summary.protection_chart = [
            {"label": "Protected", "value": totals["protected"], "tone": "ok"},
            {"label": "At risk", "value": totals["at_risk"], "tone": "danger"},
            {"label": "Unprotected", "value": totals["unprotected"], "tone": "muted"},
        ]
    upcoming = (JobSchedule.objects.filter(enabled=True, job__enabled=True, q_schedule__next_run__isnull=False)
                .select_related("job", "q_schedule").order_by("q_schedule__next_run", "pk")[:5])
    for schedule in upcoming:
        at = schedule.q_schedule.next_run
        summary.next_runs.append({
            "job": schedule.job.name, "url": schedule.job.get_absolute_url(), "at": at.isoformat(),
            "at_local": timezone.localtime(at).strftime("%Y-%m-%d %H:%M"),
            "in": timeuntil(at, now) if at > now else "due now", "schedule": str(schedule),
        })
    last_status = Subquery(BackupRun.objects.filter(job=OuterRef("pk")).order_by("-created_at", "-pk").values("status")[:1])
    last_run = Subquery(BackupRun.objects.filter(job=OuterRef("pk")).order_by("-created_at", "-pk").values("pk")[:1])
    failed = (BackupJob.objects.annotate(last_status=last_status, last_run=last_run)
              .filter(last_status=RunStatus.FAILED).order_by("name"))
    for job in failed:
        summary.failed_jobs.append({"job": job.name, "url": job.get_absolute_url(),
                                    "run_url": reverse("backups:run_detail", args=[job.last_run])})


def _device_server_figures(summary, now):
    """Device servers that are down: while backups wait for one, say so and until when."""
    from backups.devices.models import DeviceServer
    from backups.devices.routing import down_reason, waiting_on_device_servers

    waiting = {w.server.pk: w for w in waiting_on_device_servers(now=now)}
    for w in waiting.values():
        summary.alerts.append(Alert("danger", f"Backups wait for device server {w.server.name}", w.message,
                                    w.server.get_absolute_url()))
    for server in DeviceServer.objects.filter(revoked_at=None).exclude(pk__in=waiting):
        if server.last_heartbeat is not None and not server.is_up(now):
            summary.alerts.append(Alert("warn", f"Device server {server.name} is down", down_reason(server),
                                        server.get_absolute_url()))


def dashboard_summary(now=None) -> Summary:
    now = now or timezone.now()
    summary = Summary()
    _pool_figures(summary)
    _vm_figures(summary)
    _backup_figures(summary, now)
    _job_figures(summary, now)
    _store_figures(summary)
    _replication_figures(summary)
    _notification_figures(summary)
    _device_server_figures(summary, now)
    return summary
