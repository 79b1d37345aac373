"""Verify: re-read every chunk of chosen backups (all by default), check the GCM tag,
decompress and recompute the id. Each distinct chunk is read once even when many backups
share it. A backup with a missing or damaged chunk gets a `damaged` marker next to its
manifest (listed as BackupSummary.damaged); a clean re-verify removes the marker."""
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .errors import ChunkCorruptError, ManifestCorruptError, ObjectNotFoundError
from .manifest import damaged_key, list_backup_ids

BATCH = 64


@dataclass
class BackupVerification:
    id: str
    damaged_chunks: dict = field(default_factory=dict)  # chunk id -> reason
    error: str | None = None  # unreadable manifest

    @property
    def ok(self):
        return not self.damaged_chunks and self.error is None


@dataclass
class VerifyReport:
    backups: list = field(default_factory=list)
    chunks_checked: int = 0
    bytes_checked: int = 0

    @property
    def ok(self):
        return all(b.ok for b in self.backups)

    @property
    def damaged(self):
        return [b for b in self.backups if not b.ok]


def _check_chunk(repo, chunk_id):
    try:
        return chunk_id, len(repo.read_chunk(chunk_id)), None
    except ObjectNotFoundError:
        return chunk_id, 0, "missing"
    except ChunkCorruptError as exc:
        return chunk_id, 0, exc.reason


def verify(repo, rp_ids=None, *, workers=2, mark=True, on_progress=None) -> VerifyReport:
    if rp_ids is None:
        rp_ids, _ = list_backup_ids(repo.backend)
    report = VerifyReport()
    manifests = {}
    for rp_id in rp_ids:
        try:
            manifests[rp_id] = repo.load_manifest(rp_id)
        except ManifestCorruptError as exc:
            report.backups.append(BackupVerification(rp_id, error=exc.reason))
    all_ids = sorted({cid for m in manifests.values() for cid in m.chunk_ids()})
    bad = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as executor:
        for start in range(0, len(all_ids), BATCH):
            batch = all_ids[start:start + BATCH]
            for chunk_id, size, problem in executor.map(lambda c: _check_chunk(repo, c), batch):
                report.chunks_checked += 1
                report.bytes_checked += size
                if problem:
                    bad[chunk_id] = problem
            if on_progress:
                on_progress(report.chunks_checked, len(all_ids))
    for rp_id, manifest in manifests.items():
        result = BackupVerification(rp_id, {c: bad[c] for c in manifest.chunk_ids() if c in bad})
        report.backups.append(result)
    if mark:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for result in report.backups:
            if result.ok:
                repo.backend.delete(damaged_key(result.id))
            else:
                marker = {"verified_at": now, "damaged_chunks": result.damaged_chunks,
                          "error": result.error}
                repo.backend.put_atomic(damaged_key(result.id), json.dumps(marker).encode())
    return report
