"""REST shapes of backup jobs: the job (selection rule, method, store, retention, limits),
its schedules (cron in a time zone, described, with the next five times), and what a job
would do now (the VMs it selects, full or incremental per VM, the prune plan).

`manage.py job create` validates through these serializers too, so both say the same."""
from datetime import datetime

from rest_framework import serializers

from xenpools.choices import PowerState
from xenpools.models import VM, Pool

from ..choices import BackupKind
from ..models import BackupJob, DataStore, JobSchedule, RestorePoint
from . import schedules
from .choices import WEEKDAYS, SelectionMode


class JobScheduleSerializer(serializers.ModelSerializer):
    """One schedule of a job; `cron` and `timezone` are checked by backups.jobs.schedules."""

    job = serializers.PrimaryKeyRelatedField(queryset=BackupJob.objects.all())
    description = serializers.SerializerMethodField(help_text="The cron expression in words")
    next_runs = serializers.SerializerMethodField(help_text="The next five times, in the schedule's time zone")
    timezone = serializers.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. UTC or Europe/Berlin")

    class Meta:
        model = JobSchedule
        fields = ["id", "job", "cron", "timezone", "kind", "enabled", "description", "next_runs",
                  "last_missed_at", "last_missed_count", "created_at"]
        read_only_fields = ["last_missed_at", "last_missed_count", "created_at"]

    def validate_cron(self, value):
        try:
            return schedules.validate(value)
        except schedules.ScheduleError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_timezone(self, value):
        try:
            schedules.zone(value)
        except schedules.ScheduleError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_job(self, value):
        if self.instance is not None and value != self.instance.job:
            raise serializers.ValidationError("a schedule cannot move to another job; add one to that job instead")
        return value

    def get_description(self, schedule) -> str:
        return schedules.describe(schedule.cron)

    def get_next_runs(self, schedule) -> list[datetime]:
        try:
            return schedules.next_times(schedule.cron, schedule.timezone, 5)
        except (schedules.ScheduleError, ValueError):
            return []


class NestedJobScheduleSerializer(JobScheduleSerializer):
    """Schedules as the job shows them (read-only there; changed through /api/job-schedules/)."""

    class Meta(JobScheduleSerializer.Meta):
        fields = [f for f in JobScheduleSerializer.Meta.fields if f != "job"]
        read_only_fields = fields


class BackupJobSerializer(serializers.ModelSerializer):
    store = serializers.PrimaryKeyRelatedField(queryset=DataStore.objects.all())
    store_name = serializers.CharField(source="store.name", read_only=True)
    vms = serializers.PrimaryKeyRelatedField(
        many=True, required=False, queryset=VM.objects.filter(is_snapshot=False),
        help_text="VM ids backed up when selection is \"explicit\"")
    excluded_vms = serializers.PrimaryKeyRelatedField(
        many=True, required=False, queryset=VM.objects.filter(is_snapshot=False),
        help_text="VM ids never backed up by this job (\"all VMs except\")")
    rule_pools = serializers.PrimaryKeyRelatedField(many=True, required=False, queryset=Pool.objects.all(),
                                                    help_text="Only VMs of these pools; empty: every pool")
    rule_tags = serializers.ListField(child=serializers.CharField(max_length=255), required=False,
                                      help_text="VMs carrying any of these tags")
    rule_power_states = serializers.ListField(child=serializers.ChoiceField(choices=PowerState.choices),
                                              required=False, help_text="Only VMs in these power states")
    excluded_disks = serializers.ListField(
        child=serializers.UUIDField(format="hex_verbose"), required=False,
        help_text="UUIDs of disks (VDIs) never backed up; restored VMs come back without them")
    full_on_weekdays = serializers.ListField(child=serializers.ChoiceField(choices=WEEKDAYS), required=False,
                                             help_text="Force full backups on these weekdays (0 = Monday)")
    max_parallel_vms = serializers.IntegerField(min_value=1, max_value=64, default=2)
    shutdown_timeout = serializers.IntegerField(min_value=10, default=600)
    schedules = NestedJobScheduleSerializer(many=True, read_only=True)
    rpo_seconds = serializers.SerializerMethodField(
        help_text="The recovery point objective in force: rpo_hours, or derived from the schedules")

    class Meta:
        model = BackupJob
        fields = ["id", "name", "description", "enabled",
                  "selection", "vms", "rule_pools", "rule_tags", "rule_name_pattern", "rule_power_states",
                  "excluded_vms", "excluded_disks",
                  "method", "quiesce_fallback", "restart_after_snapshot", "allow_hard_shutdown", "shutdown_timeout",
                  "transfer_compression", "incremental", "full_every", "full_on_weekdays",
                  "store", "store_name", "max_parallel_vms", "window_minutes", "rpo_hours", "rpo_seconds",
                  "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
                  "deleted_vm_keep_days", "schedules", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_excluded_disks(self, value):
        return sorted({str(uuid) for uuid in value})

    def validate_full_on_weekdays(self, value):
        return sorted({int(day) for day in value})

    def validate(self, attrs):
        selection = attrs.get("selection", getattr(self.instance, "selection", SelectionMode.RULE))
        if selection == SelectionMode.EXPLICIT:
            vms = attrs["vms"] if "vms" in attrs else (list(self.instance.vms.all()) if self.instance else [])
            if not vms:
                raise serializers.ValidationError({"vms": ["Choose at least one VM for a job with chosen VMs."]})
        return attrs

    def get_rpo_seconds(self, job) -> int | None:
        rpo = job.rpo()
        return int(rpo.total_seconds()) if rpo else None


class JobVmSerializer(serializers.ModelSerializer):
    """A VM a job selects."""

    pool_name = serializers.CharField(source="pool.name", read_only=True)

    class Meta:
        model = VM
        fields = ["id", "uuid", "name", "pool", "pool_name", "power_state", "tags"]


class PredictionSerializer(serializers.Serializer):
    """The next run's plan for one VM: full or incremental, and why."""

    vm = serializers.IntegerField(source="vm.pk")
    vm_uuid = serializers.CharField(source="vm.uuid")
    vm_name = serializers.CharField(source="vm.name")
    kind = serializers.ChoiceField(choices=BackupKind.choices, help_text="What the next run will make")
    reason = serializers.CharField()


class RetentionQuerySerializer(serializers.Serializer):
    """A proposed policy for the prune preview; each rule left out is the job's own."""

    keep_last = serializers.IntegerField(min_value=0, max_value=32767, required=False)
    keep_hourly = serializers.IntegerField(min_value=0, max_value=32767, required=False)
    keep_daily = serializers.IntegerField(min_value=0, max_value=32767, required=False)
    keep_weekly = serializers.IntegerField(min_value=0, max_value=32767, required=False)
    keep_monthly = serializers.IntegerField(min_value=0, max_value=32767, required=False)
    keep_yearly = serializers.IntegerField(min_value=0, max_value=32767, required=False)
    deleted_vm_keep_days = serializers.IntegerField(min_value=0, max_value=36500, required=False)


class PlannedPointSerializer(serializers.ModelSerializer):
    """A restore point in a prune plan (context: the plan), with why it is kept."""

    reasons = serializers.SerializerMethodField(help_text="Why it is kept (empty: removed)")

    class Meta:
        model = RestorePoint
        fields = ["id", "point_id", "vm_uuid", "vm_name", "taken_at", "kind", "protected", "reasons"]

    def get_reasons(self, point) -> list[str]:
        return self.context["plan"].reasons(point.point_id)


class DeletedVmSerializer(serializers.Serializer):
    vm_uuid = serializers.CharField()
    deleted_at = serializers.DateTimeField()
    kept_until = serializers.DateTimeField(help_text="Its newest point is removed after this")


class PrunePreviewSerializer(serializers.Serializer):
    policy = RetentionQuerySerializer()
    keep = PlannedPointSerializer(many=True)
    remove = PlannedPointSerializer(many=True)
    deleted_vms = DeletedVmSerializer(many=True)


class RunQueuedSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    task_id = serializers.CharField(help_text="The django-q2 task that starts the run")
    detail = serializers.CharField()


class ProtectSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="",
                                 help_text="Why the point is kept (shown beside it)")

