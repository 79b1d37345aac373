"""Deterministic demo disk content: 1 MiB regions of zeros, text or random bytes.

A seed and a region index fully determine a region, so a simulated disk can be refilled
identically after a restart and tests can recompute what a disk should hold.
"""
from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

REGION_SIZE = 1048576
KINDS = ("zero", "text", "random")

_CORPUS_SIZE = 4 * REGION_SIZE   # text regions are cut from this per-seed corpus
_SLICE_SIZE = 16384              # ...in slices of about this size
_ZEROS = bytes(REGION_SIZE)


@dataclass
class ContentProfile:
    """Fractions of 1 MiB regions that are zero, text-like, and incompressible."""

    zero: float = 0.4
    text: float = 0.3
    random: float = 0.3

    def __post_init__(self):
        if min(self.zero, self.text, self.random) < 0 or self.zero + self.text + self.random <= 0:
            raise ValueError(f"invalid content profile {self}")


def _digest(seed: int, index: int, purpose: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{index}:{purpose}".encode(), digest_size=32).digest()


def region_kind(seed: int, index: int, profile: ContentProfile) -> str:
    """The kind of region `index`, drawn deterministically with the profile's weights."""
    total = profile.zero + profile.text + profile.random
    draw = int.from_bytes(_digest(seed, index, "kind")[:8], "big") / 2**64 * total
    if draw < profile.zero:
        return "zero"
    if draw < profile.zero + profile.text:
        return "text"
    return "random"


def generate_region(seed: int, index: int, kind: str) -> bytes:
    """1 MiB of region `index` of the given kind, identical for identical arguments."""
    if kind == "zero":
        return _ZEROS
    if kind == "random":
        # AES-CTR keystream: incompressible and several GB/s, unlike random.randbytes.
        key = _digest(seed, index, "random")
        encryptor = Cipher(algorithms.AES(key[:16]), modes.CTR(key[16:])).encryptor()
        return encryptor.update(_ZEROS)
    if kind == "text":
        return _text_region(seed, index)
    raise ValueError(f"unknown region kind {kind!r}, expected one of {KINDS}")


def _text_region(seed: int, index: int) -> bytes:
    corpus = _text_corpus(seed)
    rng = random.Random(_digest(seed, index, "text"))
    pieces = []
    length = 0
    while length < REGION_SIZE:
        start = corpus.find(b"\n", rng.randrange(len(corpus) - 2 * _SLICE_SIZE)) + 1
        piece = corpus[start:start + _SLICE_SIZE]
        pieces.append(piece)
        length += len(piece)
    return b"".join(pieces)[:REGION_SIZE]


_HOSTS = ["web01", "web02", "db-primary", "db-replica", "cache3", "worker-7", "gw", "mail"]
_SERVICES = ["nginx", "postgres", "sshd", "cron", "kernel", "systemd", "app", "redis-server"]
_LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "WARNING", "ERROR"]
_WORDS = (
    "request completed started failed retrying connection accepted closed user session "
    "timeout upstream backend query rows returned cache miss hit worker job queue scheduled "
    "checkpoint vacuum analyze table index lock acquired released memory pressure disk "
    "latency bytes sent received client server handshake certificate renewed config loaded "
    "reload signal child exited status ok denied permission path file opened written"
).split()
_PATHS = ["/api/v1/items", "/login", "/static/app.js", "/health", "/api/v1/users", "/metrics"]
_SOURCE = [
    "def {w}_{v}(self, {w2}):\n    return self.{w2}.{v}({n})\n\n",
    "    if {w} is None:\n        raise ValueError(\"{w2} {v} missing: %d\" % {n})\n",
    "for (int i = 0; i < {n}; i++) {{ {w}[i] = {w2}_{v}(i); }}\n",
    "# {w} {w2} {v}: see ticket {n}\n",
]


@functools.lru_cache(maxsize=4)
def _text_corpus(seed: int) -> bytes:
    """A few MiB of log lines and source snippets that compress about 3-4x with zstd."""
    rng = random.Random(f"corpus:{seed}")
    clock = 1_700_000_000 + rng.randrange(10**7)
    lines = []
    size = 0
    while size < _CORPUS_SIZE:
        clock += rng.randrange(3)
        if rng.random() < 0.15:
            line = rng.choice(_SOURCE).format(
                w=rng.choice(_WORDS), w2=rng.choice(_WORDS), v=rng.choice(_WORDS),
                n=rng.randrange(100000))
        else:
            line = (
                f"{clock}.{rng.randrange(1000000):06d} {rng.choice(_HOSTS)} "
                f"{rng.choice(_SERVICES)}[{rng.randrange(30000)}]: {rng.choice(_LEVELS)} "
                f"{' '.join(rng.choices(_WORDS, k=rng.randrange(2, 7)))} "
                f"{rng.choice(_PATHS)} id={rng.getrandbits(64):016x} "
                f"ms={rng.randrange(5000)} from 10.{rng.randrange(256)}.{rng.randrange(256)}."
                f"{rng.randrange(256)}\n")
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()
