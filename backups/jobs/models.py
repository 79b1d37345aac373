"""BackupJob and its schedules. Imported by backups/models.py, so Django finds them in the
"backups" app; the logic lives in the modules beside this one (selection, runs, retention,
schedules, protection)."""
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone as django_tz

from ..choices import BackupMethod, QuiesceFallback
from .choices import ScheduleKind, SelectionMode

TRANSFER_COMPRESSION = [("none", "None"), ("zstd", "zstd"), ("gzip", "gzip")]


class BackupJob(models.Model):
    """A standing order: back up these VMs this way to this store, keep this many points."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True, help_text="A disabled job's schedules do not fire; Run now still works")

    # -- which VMs ------------------------------------------------------------------------
    selection = models.CharField(max_length=10, choices=SelectionMode.choices, default=SelectionMode.RULE)
    vms = models.ManyToManyField("xenpools.VM", blank=True, related_name="explicit_jobs",
                                 help_text="Chosen VMs (selection: chosen VMs)")
    rule_pools = models.ManyToManyField("xenpools.Pool", blank=True, related_name="+",
                                        help_text="Only VMs of these pools; none chosen: every pool")
    rule_tags = models.JSONField(default=list, blank=True, help_text="VMs carrying any of these tags")
    rule_name_pattern = models.CharField(max_length=200, blank=True,
                                         help_text="Shell-style pattern on the VM name, e.g. web-* or db-??")
    rule_power_states = models.JSONField(default=list, blank=True, help_text="Only VMs in these power states")
    excluded_disks = models.JSONField(
        default=list, blank=True,
        help_text="UUIDs of disks (VDIs) never backed up, e.g. scratch or swap disks; restored VMs come back without them")
    excluded_vms = models.ManyToManyField("xenpools.VM", blank=True, related_name="excluded_from_jobs",
                                          help_text="Never these VMs (\"all VMs except\")")

    # -- how ---------------------------------------------------------------------------------
    method = models.CharField(max_length=10, choices=BackupMethod.choices, default=BackupMethod.NORMAL)
    quiesce_fallback = models.CharField(max_length=10, choices=QuiesceFallback.choices, default=QuiesceFallback.NORMAL)
    restart_after_snapshot = models.BooleanField(default=True)
    allow_hard_shutdown = models.BooleanField(default=False)
    shutdown_timeout = models.PositiveIntegerField(default=600)
    transfer_compression = models.CharField(max_length=5, choices=TRANSFER_COMPRESSION, default="none")
    incremental = models.BooleanField(default=True, help_text="Read only changed blocks when a chain exists")
    full_every = models.PositiveSmallIntegerField(
        default=0, help_text="Force a full backup of a VM after this many incrementals in a row (0: never)")
    full_on_weekdays = models.JSONField(default=list, blank=True,
                                        help_text="Force full backups on these weekdays (0 = Monday), job's time zone")

    # -- where, how many at once, how long --------------------------------------------------
    store = models.ForeignKey("backups.DataStore", on_delete=models.PROTECT, related_name="jobs")
    max_parallel_vms = models.PositiveSmallIntegerField(default=2)
    window_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="VMs not started this many minutes after the run began are skipped")
    rpo_hours = models.PositiveIntegerField(
        null=True, blank=True, help_text="Recovery point objective; empty: derived from the schedules")
    keep_last = models.PositiveSmallIntegerField(default=7)
    keep_hourly = models.PositiveSmallIntegerField(default=0)
    keep_daily = models.PositiveSmallIntegerField(default=0)
    keep_weekly = models.PositiveSmallIntegerField(default=0)
    keep_monthly = models.PositiveSmallIntegerField(default=0)
    keep_yearly = models.PositiveSmallIntegerField(default=0)
    deleted_vm_keep_days = models.PositiveIntegerField(
        default=90, help_text="A VM deleted from its pool keeps its newest restore point this many days")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("backups:job_detail", args=[self.pk])

    @property
    def retention(self):
        from .retention import JobRetention

        return JobRetention.of(self)

    def rpo(self) -> timedelta | None:
        """The RPO: set on the job, or the longest gap between two runs of its schedules plus an
        hour of grace (a nightly job has an RPO of 25 hours)."""
        from .schedules import rpo_of

        return rpo_of(self.rpo_hours, [(s.cron, s.timezone) for s in self.schedules.all() if s.enabled])


class JobSchedule(models.Model):
    """When a job runs: a cron expression in a time zone, kept in step with a django-q2
    Schedule row that calls backups.jobs.tasks.run_job."""

    job = models.ForeignKey(BackupJob, on_delete=models.CASCADE, related_name="schedules")
    cron = models.CharField(max_length=100, help_text="Minute hour day-of-month month day-of-week, e.g. 0 22 * * *")
    timezone = models.CharField(max_length=64, default="UTC")
    kind = models.CharField(max_length=5, choices=ScheduleKind.choices, default=ScheduleKind.AUTO)
    enabled = models.BooleanField(default=True)
    q_schedule = models.OneToOneField("django_q.Schedule", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    # The slots missed while the console or its workers were down: the next run is recorded
    # as their catch-up (runs once, not once per slot) and the job page says so.
    last_missed_at = models.DateTimeField(null=True, blank=True)
    last_missed_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=django_tz.now)

    class Meta:
        ordering = ["job", "pk"]

    def __str__(self):
        from .schedules import describe

        return f"{describe(self.cron)} ({self.timezone})"

    @property
    def next_run(self):
        return self.q_schedule.next_run if self.q_schedule_id and self.q_schedule else None


class MaintenanceAction(models.TextChoices):
    VERIFY = "verify", "Verify"
    GC = "gc", "Garbage collection"
    REFRESH = "refresh", "Catalog refresh"


class StoreMaintenanceSchedule(models.Model):
    """Maintenance of a data store that runs itself: verify, garbage collection or the catalog
    refresh on a cron expression in a time zone (a django-q2 Schedule row calls
    backups.tasks.run_store_maintenance), with the last result kept here for the store page."""

    store = models.ForeignKey("backups.DataStore", on_delete=models.CASCADE, related_name="maintenance_schedules")
    action = models.CharField(max_length=10, choices=MaintenanceAction.choices)
    cron = models.CharField(max_length=100, help_text="Minute hour day-of-month month day-of-week, e.g. 0 3 * * 0")
    timezone = models.CharField(max_length=64, default="UTC")
    enabled = models.BooleanField(default=True)
    # verify only: 0 = every restore point; N = only points not verified in the last N days
    options = models.JSONField(default=dict, blank=True)
    q_schedule = models.OneToOneField("django_q.Schedule", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_result = models.TextField(blank=True)
    last_ok = models.BooleanField(null=True)
    created_at = models.DateTimeField(default=django_tz.now)

    class Meta:
        ordering = ["store", "action", "pk"]

    def __str__(self):
        from .schedules import describe

        return f"{self.get_action_display()} of {self.store}: {describe(self.cron)} ({self.timezone})"

    @property
    def next_run(self):
        return self.q_schedule.next_run if self.q_schedule_id and self.q_schedule else None

    @property
    def verify_older_than_days(self) -> int:
        return int((self.options or {}).get("older_than_days") or 0)


__all__ = ["BackupJob", "JobSchedule", "MaintenanceAction", "StoreMaintenanceSchedule"]
