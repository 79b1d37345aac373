"""Restores and replication: what was asked, how it went, what it created on the pool.

A RestoreRun records one restore (a whole VM, or one disk as a new VDI) from a restore point
to a target pool; the plan it was started with is kept as JSON (uuids, not rows, so the run
stays readable after the inventory changed). A ReplicationPolicy turns each new restore point
of chosen VMs into a halted replica on another pool.
"""
from django.conf import settings
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from .choices import RunStatus, Trigger, phase_text


class RestoreKind(models.TextChoices):
    VM = "vm", "Whole VM"
    DISK = "disk", "One disk as a new VDI"
    REPLICA = "replica", "Replica"


class RestorePhase(models.TextChoices):
    QUEUED = "queued", "Queued"
    CONNECTING = "connecting", "Connecting to the pool"
    PREPARING = "preparing", "Preparing the target"
    STREAMING = "streaming", "Streaming disks"
    CONFIGURING = "configuring", "Configuring the VM"
    STARTING = "starting", "Starting the VM"
    CLEANING_UP = "cleaning_up", "Cleaning up"
    DONE = "done", "Done"


class RestoreRun(models.Model):
    """One restore from a restore point to a pool, from request to outcome."""

    kind = models.CharField(max_length=10, choices=RestoreKind.choices, default=RestoreKind.VM)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    point = models.ForeignKey("RestorePoint", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="restore_runs")
    # Kept as text too: a pruned restore point must not erase what was restored from it.
    store = models.ForeignKey("DataStore", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    store_point_id = models.CharField(max_length=100, help_text="<vm-uuid>/<timestamp> on the store")
    source_vm_uuid = models.CharField(max_length=36, blank=True, db_index=True)
    source_vm_name = models.CharField(max_length=255, blank=True)
    target_pool = models.ForeignKey("xenpools.Pool", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="restore_runs")
    target_host = models.ForeignKey("xenpools.Host", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    # {"name", "identity", "replace_original", "start_mode", "disconnect_vifs",
    #  "sr_by_disk": {key: sr uuid}, "network_by_vif": {device: network uuid | None}, "disk": key}
    plan = models.JSONField(default=dict, blank=True)
    replication_policy = models.ForeignKey("ReplicationPolicy", null=True, blank=True,
                                           on_delete=models.SET_NULL, related_name="runs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")

    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    phase = models.CharField(max_length=12, choices=RestorePhase.choices, default=RestorePhase.QUEUED)
    path = models.CharField(max_length=20, blank=True, help_text="How it was restored: xva-import or per-disk")
    bytes_total = models.BigIntegerField(default=0, help_text="Virtual size of the disks restored")
    bytes_done = models.BigIntegerField(default=0, help_text="Disk bytes restored so far")
    rate = models.FloatField(default=0.0, help_text="Bytes per second over the last seconds")
    restored_vm_uuid = models.CharField(max_length=36, blank=True)
    restored_vdi_uuid = models.CharField(max_length=36, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_heartbeat = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Restore #{self.pk} of {self.source_vm_name or self.store_point_id}"

    def get_absolute_url(self):
        try:
            return reverse("backups:restore_run", args=[self.pk])
        except NoReverseMatch:     # the progress page belongs to the wizard
            return ""

    @property
    def topic(self):
        return f"restore:{self.pk}"

    @property
    def is_finished(self):
        return self.status in RunStatus.finished()

    @property
    def progress(self):
        return min(1.0, self.bytes_done / self.bytes_total) if self.bytes_total else 0.0

    @property
    def duration_seconds(self):
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def phase_text(self):
        """The phase as the run page says it: a failed restore names the phase it failed in."""
        return phase_text(self.status, self.phase, self.get_phase_display(), self.get_status_display(),
                          queued=RestorePhase.QUEUED, done=RestorePhase.DONE)


class ReplicationPolicy(models.Model):
    """After each successful backup of a matching VM, restore the new point as a halted
    replica on the target pool, and keep the newest `keep` replicas."""

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    vm_uuids = models.JSONField(default=list, blank=True, help_text="VMs to replicate (uuids)")
    source_store = models.ForeignKey(
        "DataStore", null=True, blank=True, on_delete=models.CASCADE, related_name="replication_policies",
        help_text="Replicate every VM backed up to this data store (in addition to the VMs listed)",
    )
    target_pool = models.ForeignKey("xenpools.Pool", on_delete=models.CASCADE, related_name="replication_policies")
    target_sr = models.ForeignKey("xenpools.StorageRepository", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", help_text="Empty: the pool's default SR")
    network_map = models.JSONField(default=dict, blank=True,
                                   help_text="Source network name -> target network name")
    suffix = models.CharField(max_length=50, default=" (replica)")
    keep = models.PositiveSmallIntegerField(default=1, help_text="Replicas kept per VM")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "replication policies"

    def __str__(self):
        return self.name

    def applies_to(self, vm_uuid, store_id):
        return self.enabled and (vm_uuid in self.vm_uuids or (self.source_store_id is not None
                                                              and self.source_store_id == store_id))


__all__ = ["RestoreKind", "RestorePhase", "RestoreRun", "ReplicationPolicy"]
