import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import json, sys, tempfile


def peak_kib():
    # VmHWM belongs to this process image; ru_maxrss would carry over the (large) pytest
    # parent's peak through fork and exec.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


from datetime import datetime, timezone
from backups.repository import LocalBackend, Repository
from tests.backups.repository.diskdata import stream_mixed_disk

size = int(sys.argv[1])
with tempfile.TemporaryDirectory() as path:
    repo = Repository.create(LocalBackend(path), passphrase="p", scrypt_n=2**15)
    before = peak_kib()
    with repo.start_backup("vm-big", datetime.now(timezone.utc)) as writer:
        disk = writer.add_disk("xvda", size)
        for offset, data in stream_mixed_disk(size, block=3 << 19):  # 1.5 MiB: re-chunked
            disk.write(offset, data)
        disk.finish()
        manifest = writer.commit()
    after = peak_kib()
print(json.dumps({"peak_kib": after, "growth_kib": after - before, "totals": manifest.totals}))
"""


@pytest.mark.slow
def test_memory_stays_bounded_while_writing_a_large_disk():
    size = 1 << 30
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(size)], cwd=ROOT,
                            capture_output=True, text=True, timeout=240, check=True)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["totals"]["bytes_read"] == size
    assert measured["totals"]["chunks_total"] == 1024
    # The whole process peak (interpreter, scrypt's 32 MiB, buffers) stays under 200 MiB;
    # in-flight chunks x chunk size is about 8-12 MiB of it.
    assert measured["peak_kib"] < 200 * 1024, measured


def sparse_stream(size, chunk, piece):
    """A disk streamed in pieces without being held: one chunk in four random, the rest
    zeros (a sparse-ish disk, as a thin-provisioned VM's usually is)."""
    import random

    rng = random.Random(41)
    zeros = bytes(piece)
    for offset in range(0, size, piece):
        if (offset // chunk) % 4 == 1:
            yield offset, rng.randbytes(piece)
        else:
            yield offset, zeros


def test_memory_of_a_remote_backup_and_restore_is_bounded_by_the_windows(tmp_path):
    """tracemalloc's peak while a 96 MiB disk goes through the S3 code paths (index, store
    threads, read-ahead) is bounded by in-flight chunks x chunk size, not by the disk."""
    import tracemalloc
    from datetime import datetime, timezone

    from backups.repository import Repository

    from .conftest import RemoteDirectory

    chunk, size = 256 * 1024, 96 << 20
    repo = Repository.create(RemoteDirectory(tmp_path), encryption=False, chunk_size=chunk)
    tracemalloc.start()
    try:
        with repo.start_backup("vm-big", datetime.now(timezone.utc), max_in_flight=6,
                               store_workers=4) as writer:
            disk = writer.add_disk("xvda", size)
            for offset, data in sparse_stream(size, chunk, 64 * 1024):  # re-chunked
                disk.write(offset, data)
            disk.finish()
            manifest = writer.commit()
        _, backup_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        restored = 0
        for _, data in repo.open_disk(manifest.id, "xvda", read_ahead=6, workers=4).chunks():
            restored += len(data) if data else 0
        _, restore_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert manifest.totals["chunks_new"] == 96
    assert restored == 96 * chunk
    # 6 in flight: a plaintext and its encoded copy each (12 chunks; measured 12), plus the
    # chunk being assembled, the caller's piece and the index; the disk is 96 MiB, its
    # random part 24 MiB. Restore: 6 decoded chunks ahead at most (measured 4.5).
    assert backup_peak < (2 * 6 + 6) * chunk, backup_peak / chunk
    assert restore_peak < (6 + 4) * chunk, restore_peak / chunk
