"""Fixtures for the transfer-format tests: sample disks and external tools."""
import os
import random
import shutil

import pytest

MiB = 1 << 20


def need_tool(name: str) -> str:
    """Path of an external tool; skip without it, except on CI where it must be present."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required on CI")
        pytest.skip(f"{name} is not installed")
    return path


def sample_disk(size: int, seed: int = 7) -> bytes:
    """Zero, text and random regions with all-zero 1 MiB chunks in the middle; the last
    chunk holds text (xva-img's disk-import drops a trailing zero or partial chunk)."""
    rng = random.Random(seed)
    disk = bytearray(size)
    text = b"The quick brown fox backs up the lazy VM. " * 2000
    layout = [(0, b"\0"), (0.15, b"t"), (0.45, b"\0"), (0.55, b"r"), (0.8, b"\0"), (0.9, b"t")]
    for (start, kind), (end, _) in zip(layout, layout[1:] + [(1.0, None)]):
        a, b = int(size * start) // 512 * 512, int(size * end) // 512 * 512
        if kind == b"t":
            disk[a:b] = (text * (1 + (b - a) // len(text)))[: b - a]
        elif kind == b"r":
            disk[a:b] = rng.randbytes(b - a)
    disk[0:512] = b"\xeb\x63\x90" + bytes(509)  # a boot sector, so chunk 0 is not zero
    return bytes(disk)


@pytest.fixture(scope="session")
def disk_24m() -> bytes:
    return sample_disk(24 * MiB)


@pytest.fixture(scope="session")
def disk_odd() -> bytes:
    """A size that is not a whole number of 1 MiB chunks: the last chunk is short."""
    return sample_disk(13 * MiB + 3 * 512, seed=11)
