from django.db import models


class BackupMethod(models.TextChoices):
    OFFLINE = "offline", "Offline (shut down)"
    MEMORY = "memory", "Online live memory (checkpoint)"
    QUIESCED = "quiesced", "Online quiesced (VSS snapshot)"
    NORMAL = "normal", "Online normal (snapshot)"


class QuiesceFallback(models.TextChoices):
    FAIL = "fail", "Fail the backup"
    NORMAL = "normal", "Fall back to a normal snapshot, with a warning"


class StoreKind(models.TextChoices):
    LOCAL = "local", "Local directory or NFS mount"
    S3 = "s3", "S3-compatible object storage"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCESS = "success", "Succeeded"
    WARNING = "warning", "Succeeded with warnings"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"

    @classmethod
    def finished(cls):
        return {cls.SUCCESS, cls.WARNING, cls.FAILED, cls.CANCELLED, cls.SKIPPED}


class BackupPhase(models.TextChoices):
    QUEUED = "queued", "Queued"
    CONNECTING = "connecting", "Connecting to the pool"
    PREPARING = "preparing", "Preparing the VM"
    STREAMING = "streaming", "Streaming disks"
    COMMITTING = "committing", "Writing the manifest"
    CLEANING_UP = "cleaning_up", "Cleaning up"
    DONE = "done", "Done"


class BackupKind(models.TextChoices):
    FULL = "full", "Full"
    INCREMENTAL = "incremental", "Incremental"


class Trigger(models.TextChoices):
    MANUAL = "manual", "Back up now"
    SCHEDULE = "schedule", "Schedule"
    API = "api", "API"
    CLI = "cli", "Command line"


class VerifyState(models.TextChoices):
    UNVERIFIED = "unverified", "Not verified"
    OK = "ok", "Verified"
    DAMAGED = "damaged", "Damaged"


class CleanupTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Hourly"
    MANUAL = "manual", "Asked for"


class CleanupStatus(models.TextChoices):
    QUEUED = "queued", "Waiting for a worker"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    KEPT = "kept", "Done, some leftovers kept"
    FAILED = "failed", "Failed"

    @classmethod
    def finished(cls):
        return [cls.DONE, cls.KEPT, cls.FAILED]

    @classmethod
    def badge(cls, value):
        return {cls.DONE: "ok", cls.KEPT: "warn", cls.FAILED: "danger"}.get(value, "info")


def phase_text(status, phase, phase_label, status_label, *, queued, done):
    """"Done" for a success; a failure or cancel names the phase it stopped in."""
    if status in (RunStatus.SUCCESS, RunStatus.WARNING):
        return "Done"
    if status in (RunStatus.QUEUED, RunStatus.RUNNING):
        return phase_label
    if phase == queued:
        return f"{status_label} before it started"
    if phase == done:
        return status_label
    return f"{status_label} while {phase_label[0].lower()}{phase_label[1:]}"

