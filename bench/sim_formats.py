"""Throughput and memory of the simulator's data layer (xapisim.disks / xva / vhd).

    .venv/bin/python bench/sim_formats.py [--size-gib 1] [--dir /tmp]

Fills a disk with 40/30/30 zero/text/random content, snapshots it, then times (each from a
warm page cache): sequential reads through a DiskReader, write_xva with xxhash and with sha1,
write_vhd, and as a reference plain 1 MiB os.pread calls over the whole segment file (which
also reads its holes, as a reader without an extent map would). Rates are MB/s of virtual
size and of non-zero (allocated) data; peak RSS is the whole process.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xapisim.content import ContentProfile  # noqa: E402
from xapisim.disks import DiskStore  # noqa: E402
from xapisim.vhd import write_vhd  # noqa: E402
from xapisim.xva import write_xva  # noqa: E402

MB = 1e6


def timed(label, run, virtual, allocated):
    started = time.perf_counter()
    produced = run()
    seconds = time.perf_counter() - started
    print(f"{label:28s} {seconds:6.2f} s  {virtual / seconds / MB:8.0f} MB/s virtual"
          f"  {allocated / seconds / MB:8.0f} MB/s non-zero  ({produced / MB:.0f} MB out)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--dir", default=None, help="where to put the scratch store")
    args = parser.parse_args()
    size = int(args.size_gib * (1 << 30)) // (1 << 20) * (1 << 20)
    root = tempfile.mkdtemp(prefix="sim-formats-", dir=args.dir)
    try:
        store = DiskStore(root)
        store.create("disk", size)
        started = time.perf_counter()
        store.fill("disk", 1, ContentProfile(zero=0.4, text=0.3, random=0.3))
        print(f"fill {size / (1 << 30):.2f} GiB 40/30/30: {time.perf_counter() - started:.2f} s")
        store.snapshot("disk", "snap")
        reader = store.open_reader("snap")
        allocated = sum(length for _, length in reader.allocated_extents())
        print(f"virtual {size / MB:.0f} MB, allocated {allocated / MB:.0f} MB")

        def read_all(step=1 << 20):
            total = 0
            for offset in range(0, size, step):
                total += len(reader.read(offset, min(step, size - offset)))
            return total

        def pread_reference():
            segment = os.path.join(root, "segments", os.listdir(os.path.join(root, "segments"))[0])
            fd = os.open(segment, os.O_RDONLY)
            total = 0
            for offset in range(0, size, 1 << 20):
                total += len(os.pread(fd, 1 << 20, offset))
            os.close(fd)
            return total

        def stream(pieces):
            return sum(len(piece) for piece in pieces)

        read_all()   # warm the page cache
        timed("os.pread segment (holes too)", pread_reference, size, allocated)
        timed("DiskReader.read 1 MiB", read_all, size, allocated)
        timed("DiskReader.read 4 MiB", lambda: read_all(4 << 20), size, allocated)
        timed("write_xva xxhash", lambda: stream(write_xva(
            b"<value/>", [("Ref:1", reader)], checksum="xxhash", export_time=0)),
            size, allocated)
        timed("write_xva sha1", lambda: stream(write_xva(
            b"<value/>", [("Ref:1", reader)], checksum="sha1", export_time=0)),
            size, allocated)
        timed("write_vhd full", lambda: stream(write_vhd(reader)), size, allocated)
        reader.close()
        store.close()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"peak RSS {peak / 1024:.0f} MiB")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
