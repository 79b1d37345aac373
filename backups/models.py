"""Data stores, backup runs, per-VM backups and the restore points they produce.

The repository itself (chunks, manifests) lives on the data store; these rows are the
console's view of it: what ran, how it went, and an index of restore points that can be
rebuilt from the manifests at any time.
"""
from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from sesamweb.secrets import decrypt_secret, encrypt_secret

from .choices import (
    BackupKind,
    BackupMethod,
    BackupPhase,
    QuiesceFallback,
    RunStatus,
    StoreKind,
    Trigger,
    VerifyState,
    phase_text,
)
from .repository.chunks import DEFAULT_COMPRESSION_LEVEL


class DataStore(models.Model):
    """Where backups are kept: a directory or an S3 bucket holding one repository."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=StoreKind.choices, default=StoreKind.LOCAL)
    path = models.CharField(max_length=500, blank=True, help_text="Directory of a local store")
    s3_endpoint = models.CharField(max_length=300, blank=True)
    s3_bucket = models.CharField(max_length=200, blank=True)
    s3_prefix = models.CharField(max_length=200, blank=True)
    s3_region = models.CharField(max_length=50, blank=True)
    s3_access_key = models.CharField(max_length=200, blank=True)
    s3_secret_encrypted = models.TextField(blank=True)
    encrypted = models.BooleanField(default=True)
    # The data key, sealed with SESAM_SECRET_KEY, so that scheduled backups run unattended.
    # The administrator's passphrase and the exported key file are the way back if the
    # console itself is lost.
    key_encrypted = models.TextField(blank=True)
    key_exported_at = models.DateTimeField(null=True, blank=True)
    chunk_size = models.PositiveIntegerField(default=1024 * 1024)
    compression_level = models.PositiveSmallIntegerField(default=DEFAULT_COMPRESSION_LEVEL)
    cluster = models.CharField(
        max_length=100, blank=True,
        help_text="Worker cluster of the console's own workers that runs this store's tasks; empty: the default (a device server's store uses its cluster)",
    )
    max_parallel_streams = models.PositiveSmallIntegerField(
        default=2, help_text="VM backups writing to this store at once, across every job and worker")
    # A store owned by a remote device server: its backups and maintenance run only on that
    # server's cluster, and only that server is given its secrets (backups/devices/).
    device_server = models.ForeignKey("DeviceServer", null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="stores")
    offline = models.BooleanField(default=False, help_text="Taken offline: no backups or maintenance until it is "
                                                           "brought back online")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("backups:store_detail", args=[self.pk])

    @property
    def location(self):
        if self.kind == StoreKind.S3:
            return f"s3://{self.s3_bucket}/{self.s3_prefix}".rstrip("/") + f" at {self.s3_endpoint}"
        return self.path

    def set_s3_secret(self, secret):
        self.s3_secret_encrypted = encrypt_secret(secret, context=f"store-s3:{self.name}") if secret else ""

    def s3_secret(self):
        return decrypt_secret(self.s3_secret_encrypted, context=f"store-s3:{self.name}") if self.s3_secret_encrypted else ""

    def set_data_key(self, key_text):
        self.key_encrypted = encrypt_secret(key_text, context=f"store-key:{self.name}")

    def data_key(self):
        return decrypt_secret(self.key_encrypted, context=f"store-key:{self.name}") if self.key_encrypted else None


class BackupRun(models.Model):
    """One execution of a backup: a job run by its schedule, or "Back up now"."""

    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)
    job = models.ForeignKey("BackupJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    schedule = models.ForeignKey("JobSchedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    slot = models.DateTimeField(null=True, blank=True, help_text="The schedule time this run was for")
    window_ends_at = models.DateTimeField(null=True, blank=True,
                                          help_text="VMs not started by then are skipped and reported")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["job", "-created_at"], name="backups_run_job_recent")]

    def __str__(self):
        return f"Backup run #{self.pk}"

    @property
    def is_finished(self):
        return self.status in RunStatus.finished()

    @property
    def duration_seconds(self):
        if not self.started_at:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    def get_absolute_url(self):
        return reverse("backups:run_detail", args=[self.pk])


class VmBackup(models.Model):
    """The backup of one VM within a run: its phase, numbers and outcome."""

    run = models.ForeignKey(BackupRun, related_name="vm_backups", on_delete=models.CASCADE)
    vm = models.ForeignKey("xenpools.VM", null=True, blank=True, related_name="backups", on_delete=models.SET_NULL)
    pool = models.ForeignKey("xenpools.Pool", null=True, blank=True, on_delete=models.SET_NULL)
    vm_uuid = models.CharField(max_length=36, db_index=True)
    vm_name = models.CharField(max_length=255)
    # Null once its data store was forgotten (the run history stays).
    store = models.ForeignKey(DataStore, null=True, blank=True, related_name="vm_backups", on_delete=models.SET_NULL)
    method = models.CharField(max_length=10, choices=BackupMethod.choices)
    incremental = models.BooleanField(default=False, help_text="Read only changed blocks when a chain exists")
    quiesce_fallback = models.CharField(max_length=10, choices=QuiesceFallback.choices, default=QuiesceFallback.FAIL)
    restart_after_snapshot = models.BooleanField(
        default=True, help_text="Offline method: snapshot and start the VM again at once instead of exporting while off",
    )
    allow_hard_shutdown = models.BooleanField(default=False)
    shutdown_timeout = models.PositiveIntegerField(default=600)
    transfer_compression = models.CharField(
        max_length=5, choices=[("none", "None"), ("zstd", "zstd"), ("gzip", "gzip")], default="none",
        help_text="Compression by the host during a full export (spares the network, costs host CPU)",
    )

    kind = models.CharField(max_length=12, choices=BackupKind.choices, blank=True)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    phase = models.CharField(max_length=12, choices=BackupPhase.choices, default=BackupPhase.QUEUED)
    total_bytes = models.BigIntegerField(default=0, help_text="Virtual size of the disks")
    bytes_read = models.BigIntegerField(default=0, help_text="Bytes received from the pool")
    bytes_processed = models.BigIntegerField(default=0, help_text="Disk bytes covered so far")
    bytes_new = models.BigIntegerField(default=0, help_text="Bytes of chunks not yet in the store")
    bytes_stored = models.BigIntegerField(default=0, help_text="Bytes written to the store after compression")
    downtime_seconds = models.FloatField(null=True, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    restore_point = models.ForeignKey("RestorePoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cancel_requested = models.BooleanField(default=False)
    # Jobs: when the VM's task was handed to the workers (at most max_parallel_vms at a time),
    # and why this backup is full or incremental.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    kind_reason = models.CharField(max_length=200, blank=True)
    # Disk positions (VBD userdevice) left out of this backup, from the job's excluded disks.
    excluded_disks = models.JSONField(default=list, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Transfers started (retries after a broken connection)")
    # Streams and limits (backups/streams.py): why a queued VM waits, e.g. "waiting for a stream
    # (host xcp-host-2: 2 of 2 busy)", and the full scope, so dispatch re-sends it once a slot frees.
    waiting = models.CharField(max_length=300, blank=True)
    waiting_scope = models.CharField(max_length=200, blank=True)

    # Lease: a re-delivered task must never run a second copy of the same backup.
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_heartbeat = models.DateTimeField(null=True, blank=True)
    # Snapshots this backup created on the pool, so cleanup (also after a killed worker)
    # can find and delete them: [{"pool": id, "uuid": ...}]
    pool_artifacts = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.vm_name} ({self.get_method_display()})"

    def get_absolute_url(self):
        return reverse("backups:vm_backup_detail", args=[self.pk])

    @property
    def duration_seconds(self):
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def dedup_ratio(self):
        """Disk bytes covered per new byte: 1.0 means nothing was shared."""
        return self.bytes_processed / self.bytes_new if self.bytes_new else None

    @property
    def compression_ratio(self):
        return self.bytes_new / self.bytes_stored if self.bytes_stored else None

    @property
    def progress(self):
        return min(1.0, self.bytes_processed / self.total_bytes) if self.total_bytes else 0.0

    @property
    def phase_text(self):
        """The phase as the run page says it: a failed backup names the phase it failed in."""
        return phase_text(self.status, self.phase, self.get_phase_display(), self.get_status_display(),
                          queued=BackupPhase.QUEUED, done=BackupPhase.DONE)

    @property
    def kind_text(self):
        """Full / incremental, or why it is not known (yet)."""
        if self.kind:
            return self.get_kind_display()
        if self.status == RunStatus.QUEUED:
            return "kind decided when it starts"
        if self.status == RunStatus.RUNNING:
            return "kind being decided"
        return "no restore point written"


class VmChangeTracking(models.Model):
    """Why a VM's backups cannot be incremental: the pool refused changed block tracking on
    its disks (licence, storage driver, disk kind), as the last backup found it. No row:
    nothing known against incrementals. Written by backups/engine/tracking.py."""

    vm_uuid = models.CharField(max_length=36, unique=True)
    pool = models.ForeignKey("xenpools.Pool", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=300)
    code = models.CharField(max_length=60, blank=True, help_text="The pool's error code")
    noted_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"{self.vm_uuid}: {self.reason}"


class RestorePoint(models.Model):
    """An index row for one manifest on a data store; the manifest is the truth."""

    store = models.ForeignKey(DataStore, related_name="restore_points", on_delete=models.CASCADE)
    point_id = models.CharField(max_length=100, help_text="<vm-uuid>/<timestamp> on the store")
    vm_uuid = models.CharField(max_length=36, db_index=True)
    vm_name = models.CharField(max_length=255)
    pool_uuid = models.CharField(max_length=36, blank=True)
    taken_at = models.DateTimeField(db_index=True)
    method = models.CharField(max_length=10, choices=BackupMethod.choices)
    kind = models.CharField(max_length=12, choices=BackupKind.choices)
    parent_point_id = models.CharField(max_length=100, blank=True)
    virtual_size = models.BigIntegerField(default=0)
    bytes_new = models.BigIntegerField(default=0)
    bytes_stored = models.BigIntegerField(default=0)
    has_memory = models.BooleanField(default=False)
    verify_state = models.CharField(max_length=12, choices=VerifyState.choices, default=VerifyState.UNVERIFIED)
    verified_at = models.DateTimeField(null=True, blank=True)
    # Chain state for the next incremental: the kept snapshot VDI of each disk.
    chain = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey("BackupJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="points")
    # Protected by hand: never pruned, never deleted, until unprotected (both audited).
    protected = models.BooleanField(default=False, db_index=True)
    protected_note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-taken_at"]
        constraints = [models.UniqueConstraint(fields=["store", "point_id"], name="unique_point_per_store")]

    def __str__(self):
        return f"{self.vm_name} @ {self.taken_at:%Y-%m-%d %H:%M}"

    def get_absolute_url(self):
        return reverse("backups:point_detail", args=[self.pk])


class StreamScope(models.Model):
    """One row per stream scope ever used (`host:<uuid>`, `store:3`...): acquirers lock it
    before they count its slots (backups/streams.py)."""

    name = models.CharField(max_length=200, unique=True)

    def __str__(self):
        return self.name


class StreamSlot(models.Model):
    """A slot held in a scope until released or until it expires (a dead holder's lease)."""

    scope = models.CharField(max_length=200, db_index=True)
    holder = models.CharField(max_length=100, db_index=True, help_text="e.g. vm-backup:42")
    owner = models.CharField(max_length=100, blank=True, help_text="The worker process (host:pid)")
    acquired_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "holder"], name="backups_streamslot_unique")]

    def __str__(self):
        return f"{self.scope} held by {self.holder}"


from .models_restore import *  # noqa: F401,F403,E402
from .models_cleanup import *  # noqa: F401,F403,E402
from .jobs.models import *  # noqa: F401,F403,E402
from .devices.models import *  # noqa: F401,F403,E402
