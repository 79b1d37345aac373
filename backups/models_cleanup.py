"""Clean-up passes over a pool: what interrupted backups and restores had left there, what was
removed and what could not be (backups/pool_cleanup.py; the pool page shows the last pass)."""
from django.conf import settings
from django.db import models

from .choices import CleanupStatus, CleanupTrigger

__all__ = ["PoolCleanup"]


class PoolCleanup(models.Model):
    pool = models.ForeignKey("xenpools.Pool", on_delete=models.CASCADE, related_name="cleanups")
    trigger = models.CharField(max_length=10, choices=CleanupTrigger.choices, default=CleanupTrigger.SCHEDULE)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    status = models.CharField(max_length=10, choices=CleanupStatus.choices, default=CleanupStatus.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # [{"kind", "uuid", "name", "owner"}]; kept ones also carry "reason" (retried next pass).
    removed = models.JSONField(default=list, blank=True)
    kept = models.JSONField(default=list, blank=True)
    waiting = models.PositiveIntegerField(default=0, help_text="leftovers whose owner showed life too recently")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["pool", "-created_at"], name="backups_cleanup_pool_recent")]

    def __str__(self):
        return f"clean-up of {self.pool} at {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def is_finished(self):
        return self.status in CleanupStatus.finished()

    @property
    def status_badge(self):
        return CleanupStatus.badge(self.status)

    @property
    def summary(self) -> str:
        if self.status == CleanupStatus.FAILED:
            return self.error
        if not self.is_finished:
            return ""                      # the status says it all (waiting, running)
        parts = [f"{len(self.removed)} leftover(s) removed" if self.removed else "nothing to remove"]
        if self.kept:
            parts.append(f"{len(self.kept)} could not be removed (retried next pass)")
        if self.waiting:
            parts.append(f"{self.waiting} left for later (their backup or restore was active moments ago)")
        return "; ".join(parts)
