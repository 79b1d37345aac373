"""The audit log: an append-only, hash-chained record of every state change.

Each row carries `sequence` (1, 2, 3, ... with no gaps), the previous row's hash and its own
hash = sha256(prev_hash + canonical JSON of the row). Editing, deleting or reordering a row
breaks the chain, which `verify_chain` (and `manage.py verify_audit`) detects. The model
refuses updates and deletes; database triggers (migration 0002) refuse them too, for anyone
who bypasses the ORM.
"""
import hashlib
import json

from django.conf import settings
from django.db import models

from .choices import AuditAction, AuditOutcome

GENESIS_HASH = "0" * 64


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete an audit record."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("The audit log is append-only: rows cannot be updated.")

    def delete(self):
        raise AppendOnlyError("The audit log is append-only: rows cannot be deleted.")

    _raw_delete = delete


class AuditEvent(models.Model):
    sequence = models.PositiveBigIntegerField(unique=True, editable=False)
    created = models.DateTimeField(db_index=True, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        # Users are deactivated, not deleted; a dangling id must never rewrite history.
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150, blank=True, db_index=True)
    source = models.CharField(max_length=100, blank=True, help_text="Client address, or cli / worker / system")
    action = models.CharField(max_length=40, choices=AuditAction.choices, db_index=True)
    target_type = models.CharField(max_length=100, blank=True, db_index=True)
    target_id = models.CharField(max_length=100, blank=True)
    target_repr = models.CharField(max_length=255, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True)
    outcome = models.CharField(max_length=20, choices=AuditOutcome.choices, default=AuditOutcome.SUCCESS)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-sequence"]
        verbose_name = "audit event"

    def __str__(self):
        return f"#{self.sequence} {self.action} {self.target_repr or self.target_type}".strip()

    # --- append-only -------------------------------------------------------------------
    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("The audit log is append-only: rows cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("The audit log is append-only: rows cannot be deleted.")

    # --- chain -------------------------------------------------------------------------
    def canonical_json(self) -> str:
        """The row's content as stable JSON: the exact bytes its hash covers."""
        content = {
            "sequence": self.sequence,
            "created": self.created.isoformat(timespec="microseconds"),
            "actor_id": self.actor_id,
            "actor_username": self.actor_username,
            "source": self.source,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "target_repr": self.target_repr,
            "before": self.before,
            "after": self.after,
            "message": self.message,
            "outcome": self.outcome,
        }
        return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def compute_hash(self) -> str:
        return hashlib.sha256((self.prev_hash + self.canonical_json()).encode()).hexdigest()

    # --- display -----------------------------------------------------------------------
    @property
    def diff(self):
        """[(field, before, after)] for the fields that differ, sorted by field name."""
        before = self.before or {}
        after = self.after or {}
        if not isinstance(before, dict) or not isinstance(after, dict):
            return [("value", before, after)] if before != after else []
        rows = []
        for field in sorted(set(before) | set(after)):
            old, new = before.get(field), after.get(field)
            if old != new or field not in before or field not in after:
                rows.append((field, old, new))
        return rows

    def get_action_display_safe(self):
        try:
            return AuditAction(self.action).label
        except ValueError:
            return self.action.replace("_", " ").capitalize()
