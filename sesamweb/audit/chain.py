"""Checking the audit log's hash chain from the first row to the last."""
from dataclasses import dataclass

from .models import GENESIS_HASH, AuditEvent


@dataclass
class ChainReport:
    ok: bool
    checked: int
    bad_sequence: int | None = None
    bad_id: int | None = None
    problem: str = ""

    def __str__(self):
        if self.ok:
            return f"Audit chain intact: {self.checked} event{'s' if self.checked != 1 else ''} verified."
        return f"Audit chain broken at event #{self.bad_sequence} (id {self.bad_id}): {self.problem}"


def verify_chain() -> ChainReport:
    """Walk the rows in sequence order; report the first one that does not fit the chain.

    A changed row fails its own hash; a deleted row leaves a gap in the sequence and a
    prev_hash that no longer matches; swapped rows fail both. (Deleting the newest rows
    leaves a shorter valid chain: the syslog copy is the outside witness for that.)
    """
    expected_sequence, expected_prev, checked = 1, GENESIS_HASH, 0
    for event in AuditEvent.objects.order_by("sequence", "id").iterator(chunk_size=2000):
        problem = ""
        if event.sequence != expected_sequence:
            problem = f"expected sequence #{expected_sequence} (a row is missing or was moved)"
        elif event.prev_hash != expected_prev:
            problem = "its previous-hash does not match the row before it (a row was removed or reordered)"
        elif event.compute_hash() != event.hash:
            problem = "its content does not match its hash (the row was modified)"
        if problem:
            return ChainReport(False, checked, event.sequence, event.pk, problem)
        checked += 1
        expected_sequence, expected_prev = event.sequence + 1, event.hash
    return ChainReport(True, checked)
