"""The audit log: an append-only, HMAC-chained record of every state change.

Each row carries `sequence` (1, 2, 3, ... with no gaps), the previous row's hash and its own
hash = HMAC-SHA256(audit key, prev_hash + canonical JSON of the row), the key coming from
outside the database (keys.py). Editing, deleting, reordering or re-hashing a row breaks the
chain, and signed checkpoints kept outside the database show when the newest rows were
dropped: `verify_chain` (and `manage.py verify_audit`) reports every break. Rows written
before the key existed keep their plain SHA-256 (chain_version 1); the first keyed row
covers the last of them, so they are anchored too. The model refuses updates and deletes;
database triggers refuse them too, for anyone who bypasses the ORM.
"""
import hashlib
import hmac
import json

from django.conf import settings
from django.db import models

from .choices import AuditAction, AuditOutcome
from .keys import chain_key

GENESIS_HASH = "0" * 64
LEGACY_SHA256 = 1  # rows written before the chain was keyed
HMAC_SHA256 = 2
CHAIN_VERSION = HMAC_SHA256  # what record_event writes


def canonical_json(fields: dict, chain_version: int) -> str:
    """A row's content as stable JSON: the exact bytes its hash covers. Legacy rows keep
    the content they were hashed with; keyed rows also cover their chain version."""
    content = {
        "sequence": fields["sequence"],
        "created": fields["created"].isoformat(timespec="microseconds"),
        "actor_id": fields["actor_id"],
        "actor_username": fields["actor_username"],
        "source": fields["source"],
        "action": fields["action"],
        "target_type": fields["target_type"],
        "target_id": fields["target_id"],
        "target_repr": fields["target_repr"],
        "before": fields["before"],
        "after": fields["after"],
        "message": fields["message"],
        "outcome": fields["outcome"],
    }
    if chain_version != LEGACY_SHA256:
        content["chain_version"] = chain_version
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plain_hash(prev_hash: str, canonical: str) -> str:
    """The unkeyed SHA-256 of legacy rows: anyone can compute it, so it proves nothing alone."""
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def keyed_hash(prev_hash: str, canonical: str) -> str:
    return hmac.new(chain_key(), (prev_hash + canonical).encode(), hashlib.sha256).hexdigest()


def row_hash(fields: dict, chain_version: int, prev_hash: str) -> str:
    canonical = canonical_json(fields, chain_version)
    if chain_version == LEGACY_SHA256:
        return plain_hash(prev_hash, canonical)
    if chain_version == HMAC_SHA256:
        return keyed_hash(prev_hash, canonical)
    raise ValueError(f"unknown audit chain version {chain_version!r}")


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
    created = models.DateTimeField(editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        # Users are deactivated, not deleted; a dangling id must never rewrite history.
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=100, blank=True, help_text="Client address, or cli / worker / system")
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    target_repr = models.CharField(max_length=255, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True)
    outcome = models.CharField(max_length=20, choices=AuditOutcome.choices, default=AuditOutcome.SUCCESS)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)
    chain_version = models.PositiveSmallIntegerField(editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-sequence"]
        verbose_name = "audit event"
        # Each filter of the review page with the page's ORDER BY sequence (seek pagination,
        # paging.py): the newest 51 matching rows are read from the end of one index.
        indexes = [
            models.Index(fields=["actor_username", "sequence"], name="audit_actor_seq_idx"),
            models.Index(fields=["action", "sequence"], name="audit_action_seq_idx"),
            models.Index(fields=["outcome", "sequence"], name="audit_outcome_seq_idx"),
            models.Index(fields=["target_type", "target_id", "sequence"], name="audit_target_seq_idx"),
            models.Index(fields=["created", "sequence"], name="audit_created_seq_idx"),  # dates: filters.py
        ]

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
    def _fields(self) -> dict:
        return {name: getattr(self, name) for name in (
            "sequence", "created", "actor_id", "actor_username", "source", "action", "target_type",
            "target_id", "target_repr", "before", "after", "message", "outcome")}

    def canonical_json(self) -> str:
        return canonical_json(self._fields(), self.chain_version)

    def compute_hash(self, *, sequence=None) -> str:
        """The hash this row must carry (as it would at position `sequence`, if given)."""
        fields = self._fields()
        if sequence is not None:
            fields["sequence"] = sequence
        return row_hash(fields, self.chain_version, self.prev_hash)

    def compute_plain_hash(self) -> str:
        """SHA-256 without the key: what someone re-hashing rows without the key computes."""
        return plain_hash(self.prev_hash, self.canonical_json())

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
