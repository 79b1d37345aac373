"""Throughput and memory of the repository write pipeline (backups.repository).

    .venv/bin/python bench/repository_pipeline.py [--size-gib 1] [--dir /tmp] [--no-fsync]

Backs up a generated disk (40 % zeros, 30 % text, 30 % random, every block unique) into a
fresh encrypted store (the defaults: zstd-1, AES-256-GCM, keyed BLAKE3 ids) in 1.5 MiB pieces, so
the writer re-chunks. Blocks are built by copying from small pre-generated pools, so the
generator costs little next to the pipeline. Then a second backup of the same disk (all
dedup) and a full restore read (decrypt, decompress, id check). Rates are MB/s of disk size;
peak RSS is the whole process. --no-fsync isolates CPU cost from the disk's write speed.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

from backups.repository import LocalBackend, Repository  # noqa: E402
from backups.repository import backends  # noqa: E402

MB = 1e6
WORDS = (b"backup restore chunk manifest virtual machine pool host storage network "
         b"snapshot export import verify prune garbage collect encrypt compress").split()


def make_text_pool(size=16 << 20):
    rng = random.Random(5)
    words = [rng.choice(WORDS) for _ in range(4096)]
    # Shuffled word runs: compresses like prose (about 4x with zstd-3), not like a repeat.
    out = bytearray()
    while len(out) < size:
        start = rng.randrange(len(words) - 64)
        out += b" ".join(words[start:start + rng.randrange(8, 64)]) + b"\n"
    return bytes(out[:size])


TEXT = make_text_pool()
RANDOM_KEY = bytes(range(32))


def generated_disk(size, piece):
    """Same content on every call (a day-2 backup sees the same disk)."""
    zeros = bytes(piece)
    rng = random.Random(size)
    for index, offset in enumerate(range(0, size, piece)):
        n = min(piece, size - offset)
        kind = index % 10
        if kind < 4:
            yield offset, zeros[:n]
            continue
        if kind < 7:
            start = rng.randrange(len(TEXT) - n)
            block = bytearray(TEXT[start:start + n])
        else:
            block = bytearray(_random_block(index, n))
        # A unique stamp every 64 KiB keeps every chunk distinct (no accidental dedup).
        for at in range(0, n, 65536):
            block[at:at + 16] = b"%016d" % (index * 1000 + at // 65536)
        yield offset, bytes(block)


CREATE = (
    "import sys; sys.path.insert(0, %r)\n"
    "from backups.repository import LocalBackend, Repository\n"
    "repo = Repository.create(LocalBackend(sys.argv[1]), passphrase='bench')\n"
    "sys.stdout.buffer.write(repo.export_key_file())\n"
) % os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _random_block(index, n):
    # AES-CTR keystream: incompressible, unique per index, repeatable, and fast (GB/s).
    nonce = index.to_bytes(8, "big") + bytes(8)  # counter in the low half: no overlap
    return Cipher(algorithms.AES(RANDOM_KEY), modes.CTR(nonce)).encryptor().update(bytes(n))


def cpu_seconds():
    t = os.times()
    return t.user + t.system


def backup(repo, size, piece, started, **kwargs):
    global LAST_CPU
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    with repo.start_backup("vm-bench", started, **kwargs) as writer:
        disk = writer.add_disk("xvda", size)
        for offset, data in generated_disk(size, piece):
            disk.write(offset, data)
        disk.finish()
        manifest = writer.commit()
    LAST_CPU = cpu_seconds() - c0
    return time.perf_counter() - t0, manifest


LAST_CPU = 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    if args.no_fsync:
        backends.os = type("NoFsyncOs", (), {"__getattr__": lambda s, n: getattr(os, n),
                                             "fsync": staticmethod(lambda fd: None)})()
    size = int(args.size_gib * (1 << 30))
    piece = 3 << 19

    t0 = time.perf_counter()
    n = 0
    for _, data in generated_disk(size, piece):
        n += len(data)
    generate_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(dir=args.dir) as path:
        # Create the store (scrypt n=2**17 peaks at 128 MiB) in a child process and open it
        # by key file here, as a worker does with the key the console keeps encrypted.
        key_file = subprocess.run(
            [sys.executable, "-c", CREATE, path], check=True, capture_output=True).stdout
        repo = Repository.open(LocalBackend(path), key_file=key_file)
        started = datetime.now(timezone.utc)
        seconds, first = backup(repo, size, piece, started, max_in_flight=args.in_flight,
                                workers=args.workers)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        first_cpu = LAST_CPU
        seconds2, second = backup(repo, size, piece, started + timedelta(seconds=1),
                                  max_in_flight=args.in_flight, workers=args.workers)
        t0 = time.perf_counter()
        restored = sum(len(d) for _, d in repo.open_disk(first.id, "xvda").stream())
        restore_s = time.perf_counter() - t0
        assert restored == size

    t = first.totals
    print(f"disk {size / MB:.0f} MB, pieces {piece} B, chunk {repo.chunk_size} B, "
          f"in flight {args.in_flight}, workers {args.workers or 'cpu count'}, "
          f"fsync {'off' if args.no_fsync else 'on'}")
    print(f"generator alone        {size / MB / generate_s:8.0f} MB/s")
    print(f"first backup           {size / MB / seconds:8.0f} MB/s  ({seconds:.1f} s)  "
          f"stored {t['bytes_stored'] / MB:.0f} MB of {t['bytes_new'] / MB:.0f} MB new, "
          f"{t['chunks_zero']} zero chunks")
    print(f"  CPU time {first_cpu:.1f} s = {size / MB / first_cpu:.0f} MB per CPU-second "
          f"(a bound for {os.cpu_count()} idle cores: "
          f"{os.cpu_count() * size / MB / first_cpu:.0f} MB/s); load average at the end "
          f"{os.getloadavg()[0]:.1f}")
    print(f"second backup (dedup)  {size / MB / seconds2:8.0f} MB/s  "
          f"new {second.totals['bytes_new']} B")
    print(f"restore read           {size / MB / restore_s:8.0f} MB/s")
    print(f"peak RSS               {peak:8.0f} MiB")


if __name__ == "__main__":
    main()
