"""Named constants for the pools app (NetBox style: models and templates use these)."""
from django.db import models


class Scheme(models.TextChoices):
    HTTPS = "https", "HTTPS"
    HTTP = "http", "HTTP (unencrypted)"


class PoolHealth(models.TextChoices):
    UNKNOWN = "unknown", "Not contacted yet"
    HEALTHY = "healthy", "Healthy"
    UNREACHABLE = "unreachable", "Unreachable"
    AUTH_FAILED = "auth_failed", "Authentication failed"
    CERTIFICATE = "certificate", "Certificate problem"
    ERROR = "error", "Error"

    @classmethod
    def badge(cls, value):
        return {cls.HEALTHY: "ok", cls.UNKNOWN: "muted"}.get(value, "danger")


class PowerState(models.TextChoices):
    # XenAPI spells these capitalised (vm_power_state enum).
    RUNNING = "Running", "Running"
    HALTED = "Halted", "Halted"
    PAUSED = "Paused", "Paused"
    SUSPENDED = "Suspended", "Suspended"

    @classmethod
    def badge(cls, value):
        return {cls.RUNNING: "ok", cls.HALTED: "muted", cls.PAUSED: "warn", cls.SUSPENDED: "warn"}.get(value, "muted")


class OsFamily(models.TextChoices):
    WINDOWS = "windows", "Windows"
    LINUX = "linux", "Linux / other"


class DiskType(models.TextChoices):
    DISK = "Disk", "Disk"
    CD = "CD", "CD"
    FLOPPY = "Floppy", "Floppy"


class HaRestartPriority(models.TextChoices):
    NONE = "", "Not protected"
    RESTART = "restart", "Restart"
    BEST_EFFORT = "best-effort", "Best effort"


class SyncState(models.TextChoices):
    """A sync asked for by a person (Sync now, a new pool): queued for a worker, then running."""
    IDLE = "idle", "Idle"
    QUEUED = "queued", "Waiting for a worker"
    RUNNING = "running", "Running"


class SyncPhase(models.TextChoices):
    QUEUED = "queued", "Waiting for a worker"
    CONNECTING = "connecting", "Connecting to the pool master"
    READING = "reading", "Reading the inventory"
    WRITING = "writing", "Saving the inventory"
    DONE = "done", "Finished"
