"""Checking the audit log's chain from the first row to the last, and against the latest
signed checkpoint kept outside the database. Every break is reported, not only the first.

Kinds of break, each with the chain positions (#sequence) and row ids involved:
- edited: the row's content no longer matches its hash;
- deleted: rows are missing (a gap in the sequence, or a previous-hash link that points to a
  row that is not there), or fewer rows than the checkpoint counted;
- reordered: the row is intact but sits at another position than the one it was written at;
- rehashed: the hash is a plain SHA-256 of the row where the keyed HMAC belongs (someone
  without the key edited rows and re-hashed them), or unkeyed rows follow keyed ones;
- truncated: the newest rows are missing compared with the latest checkpoint (or other events
  stand where the checkpoint's last one was: the log was cut back and written on);
- checkpoint: a checkpoint whose signature is wrong (forged or damaged).
"""
from dataclasses import dataclass, field
from pathlib import Path

from django.db.models import TextChoices

from .checkpoints import Checkpoint, data_directory_path, read_checkpoint
from .models import GENESIS_HASH, HMAC_SHA256, LEGACY_SHA256, AuditEvent

_MAX_PROBES = 1000  # reorder and deletion checks cost a query or two per broken row
_MAX_SHIFT = 32  # rows renumbered to hide up to this many deleted rows are still recognised


class BreakKind(TextChoices):
    EDITED = "edited", "Edited"
    DELETED = "deleted", "Deleted"
    REORDERED = "reordered", "Reordered"
    REHASHED = "rehashed", "Re-hashed without the key"
    TRUNCATED = "truncated", "Truncated"
    CHECKPOINT = "checkpoint", "Bad checkpoint"


@dataclass
class ChainBreak:
    kind: str
    sequences: list[int]  # chain positions concerned (those of missing rows too)
    ids: list[int]  # ids of the rows concerned that are still there
    detail: str

    @property
    def label(self) -> str:
        return BreakKind(self.kind).label

    @property
    def where(self) -> str:
        if not self.sequences:
            return ""
        first, last = self.sequences[0], self.sequences[-1]
        events = f"event #{first}" if first == last else f"events #{first}-#{last}"
        if not self.ids:
            return events
        ids = ", ".join(str(i) for i in self.ids) if len(self.ids) <= 5 else f"{self.ids[0]}-{self.ids[-1]}"
        return f"{events} (id{'s' if len(self.ids) > 1 else ''} {ids})"

    def __str__(self):
        return f"{self.label}: {self.where}: {self.detail}" if self.where else f"{self.label}: {self.detail}"


@dataclass
class ChainReport:
    checked: int
    breaks: list[ChainBreak] = field(default_factory=list)
    checkpoint: Checkpoint | None = None  # the one the chain was compared with

    @property
    def ok(self) -> bool:
        return not self.breaks

    def kinds(self) -> set[str]:
        return {b.kind for b in self.breaks}

    @property
    def summary(self) -> str:
        plural = "s" if self.checked != 1 else ""
        if self.ok:
            against = f", matching the {self.checkpoint}" if self.checkpoint else ""
            return f"Audit chain intact: {self.checked} event{plural} verified{against}."
        count = len(self.breaks)
        return f"Audit chain broken: {count} break{'s' if count != 1 else ''} found in {self.checked} event{plural}."

    def __str__(self):
        return "\n".join([self.summary] + [f"- {b}" for b in self.breaks])


class _Breaks(list):
    """Breaks in chain order; consecutive rows with the same kind and detail become one."""

    def add(self, kind, sequences, ids, detail):
        last = self[-1] if self else None
        if (last and last.kind == kind and last.detail == detail and last.sequences and sequences
                and sequences[0] == last.sequences[-1] + 1 and len(sequences) == 1):
            last.sequences.append(sequences[0])
            last.ids.extend(ids)
            return
        self.append(ChainBreak(kind, list(sequences), list(ids), detail))


def _position_by_id(event) -> int | None:
    """Ids grow with the sequence as rows are appended, so if the rows' sequence numbers
    were permuted, the row with the k-th smallest id was the k-th."""
    rank = AuditEvent.objects.filter(pk__lt=event.pk).count()
    return AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True)[rank:rank + 1].first()


def _original_position(event, probes) -> int | None:
    """Where an intact row that fails at its current position was written: another row's
    place (swapped), or a few places later (renumbered to close the gap of deleted rows)."""
    candidates = [event.sequence + shift for shift in range(1, _MAX_SHIFT + 1)]
    if probes[0] < _MAX_PROBES:
        probes[0] += 1
        candidates.insert(0, _position_by_id(event))
    for candidate in candidates:
        if candidate not in (None, event.sequence) and event.compute_hash(sequence=candidate) == event.hash:
            return candidate
    return None


def _points_to_a_row(prev_hash, probes) -> bool:
    if probes[0] >= _MAX_PROBES:
        return True  # unknown: do not claim a deletion
    probes[0] += 1
    return AuditEvent.objects.filter(hash=prev_hash).exists()


def _row_problem(event, keyed_seen, probes):
    """(kind, detail, position written at) when the row does not match its own hash, else None."""
    if event.chain_version not in (LEGACY_SHA256, HMAC_SHA256):
        return BreakKind.EDITED, f"unknown chain version {event.chain_version}", event.sequence
    matches = event.compute_hash() == event.hash
    if event.chain_version == LEGACY_SHA256 and keyed_seen:
        if matches:
            return BreakKind.REHASHED, "an unkeyed hash after keyed events (rewritten without the key)", event.sequence
        return BreakKind.EDITED, "its content does not match its hash", event.sequence
    if matches:
        return None
    if event.chain_version == HMAC_SHA256 and event.compute_plain_hash() == event.hash:
        return (BreakKind.REHASHED, "plain SHA-256 where the keyed HMAC belongs (edited, then re-hashed without the key)",
                event.sequence)
    original = _original_position(event, probes)
    if original is not None:
        return BreakKind.REORDERED, f"written as event #{original}", original
    return BreakKind.EDITED, "its content does not match its hash", event.sequence


@dataclass
class _Walk:
    checked: int = 0
    last: AuditEvent | None = None
    watched_hash: str | None = None  # of the row at the checkpoint's position
    watched_intact: bool = False  # that row matches its own (keyed) hash
    count_to_watched: int = 0  # rows up to the checkpoint's position


def _walk(breaks: _Breaks, watch: int | None) -> _Walk:
    """Check every row and link, noting what the checkpoint at position `watch` needs."""
    expected_sequence, expected_prev = 1, GENESIS_HASH
    previous, previous_problem, keyed_seen, probes = None, None, False, [0]
    walk = _Walk()
    for event in AuditEvent.objects.order_by("sequence", "id").iterator(chunk_size=2000):
        walk.checked += 1
        if watch is not None and event.sequence <= watch:
            walk.count_to_watched += 1
            if event.sequence == watch:
                walk.watched_hash = event.hash
        gap = event.sequence > expected_sequence
        if gap:
            after = f"after id {previous.pk} " if previous else ""
            breaks.add(BreakKind.DELETED, list(range(expected_sequence, event.sequence)), [],
                       f"missing {after}before id {event.pk}")
        problem = _row_problem(event, keyed_seen, probes)
        if event.sequence == watch:
            walk.watched_intact = problem is None
        if problem:
            breaks.add(problem[0], [event.sequence], [event.pk], problem[1])
        if event.prev_hash != expected_prev and not gap:
            # Not explained by the row before having been rewritten, nor by this one being edited:
            rewritten = previous_problem is not None and previous_problem[0] != BreakKind.REORDERED
            edited = problem is not None and problem[0] != BreakKind.REORDERED
            if rewritten or edited:
                pass
            elif previous is not None and previous.chain_version == LEGACY_SHA256 and event.chain_version == HMAC_SHA256:
                breaks.add(BreakKind.REHASHED, [event.sequence], [event.pk], "the unkeyed events before it were rewritten")
            elif event.prev_hash != GENESIS_HASH and not _points_to_a_row(event.prev_hash, probes):
                written_at = problem[2] if problem else event.sequence
                breaks.add(BreakKind.DELETED, [written_at - 1], [],
                           f"the event written before id {event.pk} is gone (its previous-hash points to no row)")
        keyed_seen = keyed_seen or event.chain_version == HMAC_SHA256
        previous, previous_problem = event, problem
        expected_sequence, expected_prev = event.sequence + 1, event.hash
    if previous is not None and previous.chain_version == LEGACY_SHA256:
        breaks.add(BreakKind.REHASHED, [previous.sequence], [previous.pk],
                   "the log ends with unkeyed events: no keyed event vouches for them")
    walk.last = previous
    return walk


def _compare_with_checkpoint(checkpoint, breaks, walk):
    last = walk.last
    if last is None or checkpoint.last_sequence > last.sequence:
        first_missing = last.sequence + 1 if last else 1
        breaks.add(BreakKind.TRUNCATED, list(range(first_missing, checkpoint.last_sequence + 1)), [],
                   f"the {checkpoint} lists them; the log ends at #{last.sequence if last else 0}")
        return
    if walk.watched_hash is not None and walk.watched_hash != checkpoint.last_hash:
        if walk.watched_intact:  # a genuine event, but not the one signed: cut back, then written on
            breaks.add(BreakKind.TRUNCATED, [checkpoint.last_sequence], [],
                       f"not the event in the {checkpoint}: the log was cut back and new events written since")
        else:
            breaks.add(BreakKind.EDITED, [checkpoint.last_sequence], [],
                       f"its hash differs from the one in the {checkpoint}")
    present = walk.count_to_watched
    if present < checkpoint.count and BreakKind.DELETED not in {b.kind for b in breaks}:
        breaks.add(BreakKind.DELETED, [], [],
                   f"{checkpoint.count - present} fewer events up to #{checkpoint.last_sequence} than the {checkpoint}")


def latest_checkpoint(paths, breaks) -> Checkpoint | None:
    """The authentic checkpoint with the longest chain among `paths`; forged ones are breaks."""
    best = None
    for path in paths:
        try:
            checkpoint = read_checkpoint(path)
        except (ValueError, OSError) as error:
            breaks.add(BreakKind.CHECKPOINT, [], [], f"{path} is unreadable: {error}")
            continue
        if checkpoint is None:
            continue
        if not checkpoint.is_authentic():
            breaks.add(BreakKind.CHECKPOINT, [], [], f"{path}: its signature is wrong (forged or damaged)")
        elif best is None or checkpoint.last_sequence > best.last_sequence:
            best = checkpoint
    return best


def verify_chain(checkpoint_paths=()) -> ChainReport:
    """Walk the rows in sequence order and compare the head with the latest checkpoint (the
    one in the data directory, and any copies given, e.g. from a data store)."""
    breaks, checkpoint_breaks = _Breaks(), _Breaks()
    paths = [data_directory_path(), *(Path(p) for p in checkpoint_paths)]
    checkpoint = latest_checkpoint(paths, checkpoint_breaks)
    walk = _walk(breaks, checkpoint.last_sequence if checkpoint else None)
    if checkpoint is not None:
        _compare_with_checkpoint(checkpoint, breaks, walk)
    return ChainReport(walk.checked, [*breaks, *checkpoint_breaks], checkpoint)
