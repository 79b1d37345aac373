"""Parse speed and memory of the console's XVA stream reader (backups.formats.xva).

    .venv/bin/python bench/xva_parse_throughput.py [--size-mib 1024] [--dir /tmp]

Writes an uncompressed XVA of one disk (40 % zero, 30 % text, 30 % random 1 MiB chunks,
zero chunks left out as xapi does) with XvaWriter, then, each in a fresh child process
reading the file from a warm page cache: XvaStreamReader over the plain tar (xxhash and
sha1 checksums, and xxhash without verification), and over zstd- and gzip-compressed
copies; then XvaWriter producing the same stream from chunks held in memory. Rates are
MB/s of tar bytes (compressed: of tar bytes after decompression); peak RSS is that of
the child.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backups.formats.xva import CHUNK_SIZE, XvaStreamReader, XvaWriter  # noqa: E402

MB = 1e6


def sample_ova(size: int) -> bytes:
    """A minimal ova.xml: one VM, one VBD, one VDI of the given size."""
    def obj(cls, ref, fields):
        members = "".join(f"<member><name>{k}</name><value>{v}</value></member>"
                          for k, v in fields.items())
        return (f"<value><struct><member><name>class</name><value>{cls}</value></member>"
                f"<member><name>id</name><value>{ref}</value></member>"
                f"<member><name>snapshot</name><value><struct>{members}</struct></value>"
                "</member></struct></value>")
    objects = (obj("VM", "Ref:0", {"name_label": "bench", "suspend_VDI": "OpaqueRef:NULL"})
               + obj("VBD", "Ref:2", {"VM": "Ref:0", "VDI": "Ref:1", "type": "Disk",
                                      "userdevice": "0"})
               + obj("VDI", "Ref:1", {"virtual_size": size}))
    return ("<value><struct><member><name>version</name><value><struct><member>"
            "<name>export_vsn</name><value>2</value></member></struct></value></member>"
            f"<member><name>objects</name><value><array><data>{objects}</data></array>"
            "</value></member></struct></value>").encode()


def chunks(size: int):
    rng = random.Random(1)
    text = (b"All work and no backups makes Jack a dull admin. " * 30000)[:CHUNK_SIZE]
    randoms = [rng.randbytes(CHUNK_SIZE) for _ in range(16)]
    for index in range(size // CHUNK_SIZE):
        kind = rng.random()
        if kind < 0.4:
            continue
        data = text if kind < 0.7 else randoms[index % len(randoms)]
        yield index * CHUNK_SIZE, data


def write_sample(path: str, size: int, checksum: str) -> None:
    writer = XvaWriter(sample_ova(size), checksum=checksum)
    with open(path, "wb") as out:
        for part in writer.stream([("Ref:1", size, chunks(size))]):
            out.write(part)


def parse(path: str, verify: bool) -> None:
    """Child process: parse the file, print JSON with seconds, tar bytes, peak RSS."""
    with open(path, "rb", buffering=0) as raw:
        start = time.perf_counter()
        reader = XvaStreamReader(raw, verify=verify)
        reader.ova_xml()
        data_bytes = sum(len(data) for _, _, data in reader.blocks())
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "data": data_bytes, "read": reader.bytes_read,
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def write_only(size: int, checksum: str) -> None:
    """Child process: time XvaWriter producing the stream (discarded), print JSON."""
    writer = XvaWriter(sample_ova(size), checksum=checksum)
    pieces = list(chunks(size))  # prepared first: only the writer is timed
    start = time.perf_counter()
    produced = sum(len(part) for part in writer.stream([("Ref:1", size, iter(pieces))]))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "bytes": produced,
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(path: str, tar_bytes: int, label: str, verify: bool = True) -> None:
    with open(path, "rb") as f:  # warm the page cache
        while f.read(8 << 20):
            pass
    out = subprocess.run([sys.executable, __file__, "--child", path, "--verify",
                          "1" if verify else "0"], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout)
    print(f"{label:<34} {tar_bytes / MB / result['seconds']:8.0f} MB/s of tar   "
          f"{result['read'] / MB / result['seconds']:8.0f} MB/s read   "
          f"peak RSS {result['rss_mib']:6.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--child")
    parser.add_argument("--verify", default="1")
    parser.add_argument("--child-write")
    args = parser.parse_args()
    size = args.size_mib * CHUNK_SIZE
    if args.child:
        return parse(args.child, args.verify == "1")
    if args.child_write:
        return write_only(size, args.child_write)
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        for checksum in ("xxhash", "sha1"):
            path = os.path.join(work, f"export-{checksum}.xva")
            write_sample(path, size, checksum)
            tar_bytes = os.path.getsize(path)
            if checksum == "xxhash":
                print(f"disk {args.size_mib} MiB, XVA {tar_bytes / MB:.0f} MB "
                      f"(zero chunks omitted); python {sys.version.split()[0]}")
            measure(path, tar_bytes, f"plain tar, {checksum} verified")
            if checksum == "xxhash":
                measure(path, tar_bytes, "plain tar, not verified", verify=False)
                subprocess.run(["zstd", "-q", "-1", "-T0", path, "-o", path + ".zst"],
                               check=True)
                measure(path + ".zst", tar_bytes, "zstd -1 compressed, xxhash")
                with open(path, "rb") as src, gzip.open(path + ".gz", "wb", 1) as dst:
                    while block := src.read(8 << 20):
                        dst.write(block)
                measure(path + ".gz", tar_bytes, "gzip -1 compressed, xxhash")
            os.remove(path)
        for checksum in ("xxhash", "sha1"):
            out = subprocess.run([sys.executable, __file__, "--child-write", checksum,
                                  "--size-mib", str(args.size_mib)],
                                 check=True, capture_output=True, text=True)
            result = json.loads(out.stdout)
            print(f"{'XvaWriter, ' + checksum:<34} "
                  f"{result['bytes'] / MB / result['seconds']:8.0f} MB/s of tar   "
                  f"{'':26}peak RSS {result['rss_mib']:6.1f} MiB")


if __name__ == "__main__":
    main()
