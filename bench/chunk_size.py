"""Day-2 store growth for 1 MiB against 4 MiB chunks (the store's default chunk size).

    .venv/bin/python bench/chunk_size.py [--size-gib 1] [--change 0.02] [--dir /tmp]

Day 1: a full backup of a generated disk (40 % zeros, 30 % text, 30 % random). Day 2: a
scattered change of `--change` of the disk's 64 KiB blocks (CBT granularity), backed up as
an incremental that writes only the changed blocks over the parent's chunks. Growth is what
day 2 adds to the store (compressed, encrypted bytes). Fixed-size chunks must be rewritten
whole when any block in them changes, so smaller chunks grow the store less; larger chunks
mean fewer objects (S3 requests, manifest entries).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backups.repository import LocalBackend, Repository  # noqa: E402
from repository_pipeline import generated_disk  # noqa: E402

MB = 1e6
BLOCK = 64 * 1024


def measure(chunk_size, size, changed_blocks, workdir):
    with tempfile.TemporaryDirectory(dir=workdir) as path:
        repo = Repository.create(LocalBackend(path), passphrase="bench", scrypt_n=2**15,
                                 chunk_size=chunk_size)
        day1 = datetime(2026, 11, 1, tzinfo=timezone.utc)
        with repo.start_backup("vm", day1) as writer:
            disk = writer.add_disk("xvda", size)
            for offset, data in generated_disk(size, 1 << 20):
                disk.write(offset, data)
            disk.finish()
            full = writer.commit()
        rng = random.Random(2)
        t0 = time.perf_counter()
        with repo.start_backup("vm", day1 + timedelta(days=1), parent=full.id) as writer:
            disk = writer.add_disk("xvda", size, parent_chunks=full.disk("xvda").chunks)
            for block in changed_blocks:
                disk.write(block * BLOCK, rng.randbytes(BLOCK))
            disk.finish()
            incremental = writer.commit()
        seconds = time.perf_counter() - t0
        return full.totals, incremental.totals, seconds, len(full.disk("xvda").chunks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--change", type=float, default=0.02)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    size = int(args.size_gib * (1 << 30)) // BLOCK * BLOCK
    blocks = size // BLOCK
    changed = sorted(random.Random(1).sample(range(blocks), int(blocks * args.change)))
    print(f"disk {size / MB:.0f} MB, {len(changed)} of {blocks} 64 KiB blocks changed "
          f"({len(changed) * BLOCK / MB:.1f} MB)")
    results = {}
    for chunk_size in (1 << 20, 4 << 20):
        full, inc, seconds, count = measure(chunk_size, size, changed, args.dir)
        results[chunk_size] = inc["bytes_stored"]
        print(f"chunk {chunk_size >> 20} MiB: day 1 stored {full['bytes_stored'] / MB:7.1f} MB; "
              f"day 2 growth {inc['bytes_stored'] / MB:6.1f} MB in {inc['chunks_new']} of "
              f"{count} chunks ({seconds:.1f} s)")
    ratio = results[4 << 20] / results[1 << 20]
    print(f"day-2 growth 4 MiB / 1 MiB = {ratio:.2f}x")


if __name__ == "__main__":
    main()
