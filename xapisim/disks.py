"""Sparse, copy-on-write VDI content with changed-block tracking (CBT).

Layout under the store root:

    segments/<n>.seg     sparse data files; block i of a disk lives at offset i * BLOCK_SIZE
                         of whichever segment its map names, so contiguous blocks of one
                         segment are contiguous in the file and read with one os.pread
    disks/<id>.json      size, lineage, data flag, current segment, segments owned
    disks/<id>.map       per block: segment number (uint32, 0 = zeros) and version (uint64)
    disks/<id>.journal   map updates appended since the .map was written (replayed on open)

A write goes to the disk's current segment; if that segment is shared with a snapshot the
disk first gets a fresh one (copy-on-write). A snapshot copies only the map, so it is instant
and takes no space until one side changes. Every block write gets a new store-wide version
number; changed_blocks compares versions, which is exact per write (same bytes written again
still count), as blktap's CBT log is.
"""
from __future__ import annotations

import collections
import ctypes
import ctypes.util
import json
import os
import random
import re
import struct
import threading
import uuid
from array import array
from typing import Callable

from xapisim import content

BLOCK_SIZE = 65536

_MAP_MAGIC = b"XSIMMAP1"
_JOURNAL_RECORD = struct.Struct("<IIQ")   # block index, segment, version
_DISK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


class DiskError(Exception):
    """A disk operation that cannot be done (unknown disk, out-of-range I/O, no data...)."""


class DiskFullError(DiskError):
    """The capacity callback refused new space."""


def _blocks_for(size: int) -> int:
    return -(-size // BLOCK_SIZE)


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def _punch_hole(fd: int, offset: int, length: int) -> None:
    """Give a block's space back to the filesystem; the file keeps its size."""
    if _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        # Filesystems without hole punching keep the bytes; only space is lost, not data.
        pass


class _Disk:
    """One disk's metadata and block map, held in memory and persisted by DiskStore."""

    def __init__(self, disk_id: str, virtual_size: int, lineage: str):
        self.id = disk_id
        self.virtual_size = virtual_size
        self.lineage = lineage           # shared by a disk and its snapshots / clones
        self.has_data = True
        self.current_segment = 0         # 0: none yet; else a segment only this disk uses
        self.owned: list[int] = []       # segments counted in physical_utilisation
        nblocks = _blocks_for(virtual_size)
        self.segments = array("I", bytes(4 * nblocks))
        self.versions = array("Q", bytes(8 * nblocks))
        self.counts: collections.Counter[int] = collections.Counter()
        self.journal_records = 0
        self.cbt_log: dict | None = None  # sm's <uuid>.cbtlog pointers (xapisim.cbt)

    def meta(self) -> dict:
        return {"virtual_size": self.virtual_size, "lineage": self.lineage,
                "has_data": self.has_data, "current_segment": self.current_segment,
                "owned": self.owned, "cbt_log": self.cbt_log}

    def recount(self) -> None:
        self.counts = collections.Counter(self.segments)
        del self.counts[0]


class DiskReader:
    """A read-only view of a disk as it was when opened; use from one thread at a time."""

    def __init__(self, disk_id: str, size: int, segments: array, paths: dict[int, str]):
        self.disk_id = disk_id
        self.size = size
        self._segments = segments
        # Opened now so the view survives the disk (and its segments) being destroyed.
        self._fds = {number: os.open(path, os.O_RDONLY) for number, path in paths.items()}

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DiskError(f"read of {length} bytes at {offset} is outside disk {self.disk_id}"
                            f" of size {self.size}")
        return _read_blocks(self._segments, self._fds, offset, length)

    def allocated_extents(self) -> list[tuple[int, int]]:
        extents = []
        segments = self._segments
        nblocks = len(segments)
        i = 0
        while i < nblocks:
            if not segments[i]:
                i += 1
                continue
            start = i
            while i < nblocks and segments[i]:
                i += 1
            begin = start * BLOCK_SIZE
            extents.append((begin, min(i * BLOCK_SIZE, self.size) - begin))
        return extents

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_ZEROS = bytes(4 * 1048576)
_ZEROS_VIEW = memoryview(_ZEROS)


def _read_blocks(segments: array, fds: dict[int, int], offset: int, length: int) -> bytes:
    """Read a range from a block map, one os.pread per run of blocks in the same segment."""
    if length == 0:
        return b""
    first = offset // BLOCK_SIZE
    last = (offset + length - 1) // BLOCK_SIZE
    pieces = []
    position = offset
    end = offset + length
    i = first
    while i <= last:
        segment = segments[i]
        j = i + 1
        while j <= last and segments[j] == segment:
            j += 1
        run_end = min(j * BLOCK_SIZE, end)
        if segment:
            data = os.pread(fds[segment], run_end - position, position)
            if len(data) < run_end - position:   # sparse tail never written: zeros
                data += bytes(run_end - position - len(data))
        elif first == last or run_end - position > len(_ZEROS):
            data = bytes(run_end - position)
        else:
            # A view of one shared zero buffer: 5x faster joins than a fresh bytes(n) each.
            data = _ZEROS_VIEW[:run_end - position]
        pieces.append(data)
        position = run_end
        i = j
    if len(pieces) == 1:
        return pieces[0] if isinstance(pieces[0], bytes) else bytes(length)
    return b"".join(pieces)


class DiskStore:
    """All simulated disks of one pool, persisted under `root`.

    Thread-safe: one lock guards map changes; readers work on a copy of the map taken under
    the lock. A write that lands in a segment only its own disk uses overwrites in place, so a
    DiskReader opened on a disk that is then written may see the new bytes; readers of
    snapshots (what exports read) are unaffected.
    """

    def __init__(self, root: str | os.PathLike, *,
                 capacity: Callable[[str, int], bool] | None = None):
        """`capacity(disk_id, new_bytes)` may return False to refuse growth (DiskFullError)."""
        self.root = os.fspath(root)
        self._capacity = capacity
        self._lock = threading.RLock()
        self._disks: dict[str, _Disk] = {}
        self._fds: dict[int, int] = {}
        self._refcounts: collections.Counter[int] = collections.Counter()  # block refs
        self._live: collections.Counter[int] = collections.Counter()  # distinct blocks held
        os.makedirs(self._path("disks"), exist_ok=True)
        os.makedirs(self._path("segments"), exist_ok=True)
        self._load()

    # ----- public interface -------------------------------------------------------------

    def create(self, disk_id: str, virtual_size: int) -> None:
        if not _DISK_ID.match(disk_id):
            raise DiskError(f"invalid disk id {disk_id!r}")
        if virtual_size < 0:
            raise DiskError(f"invalid virtual size {virtual_size}")
        with self._lock:
            if disk_id in self._disks:
                raise DiskError(f"disk {disk_id} already exists")
            disk = _Disk(disk_id, virtual_size, uuid.uuid4().hex)
            self._disks[disk_id] = disk
            self._save(disk)

    def exists(self, disk_id: str) -> bool:
        with self._lock:
            return disk_id in self._disks

    def virtual_size(self, disk_id: str) -> int:
        with self._lock:
            return self._disk(disk_id).virtual_size

    def physical_utilisation(self, disk_id: str) -> int:
        with self._lock:
            disk = self._disk(disk_id)
            return sum(self._live[number] for number in disk.owned) * BLOCK_SIZE

    def snapshot(self, src_id: str, dst_id: str) -> None:
        if not _DISK_ID.match(dst_id):
            raise DiskError(f"invalid disk id {dst_id!r}")
        with self._lock:
            src = self._disk(src_id)
            if dst_id in self._disks:
                raise DiskError(f"disk {dst_id} already exists")
            dst = _Disk(dst_id, src.virtual_size, src.lineage)
            dst.has_data = src.has_data
            dst.segments = src.segments[:]
            dst.versions = src.versions[:]
            dst.counts = collections.Counter(src.counts)
            self._refcounts.update(dst.counts)
            src.current_segment = 0   # now shared: the next write of either side copies
            self._disks[dst_id] = dst
            self._save(dst)
            self._save(src)

    def destroy(self, disk_id: str) -> None:
        with self._lock:
            disk = self._disk(disk_id)
            self._release_blocks(disk, range(len(disk.segments)))
            self._pass_on_ownership(disk)
            del self._disks[disk_id]
            for suffix in (".json", ".map", ".journal"):
                try:
                    os.unlink(self._disk_path(disk_id, suffix))
                except FileNotFoundError:
                    pass
            self._delete_unused_segments()

    def data_destroy(self, disk_id: str) -> None:
        with self._lock:
            disk = self._disk(disk_id)
            self._release_blocks(disk, range(len(disk.segments)))
            self._pass_on_ownership(disk)
            disk.has_data = False
            disk.current_segment = 0
            self._save(disk)
            self._delete_unused_segments()

    def has_data(self, disk_id: str) -> bool:
        with self._lock:
            return self._disk(disk_id).has_data

    def cbt_log(self, disk_id: str) -> dict | None:
        """The disk's changed-block log pointers ({"parent", "child"}), None when it has no log.
        Kept beside the disk as sm keeps <uuid>.cbtlog beside the VHD; xapisim.cbt owns the rules."""
        with self._lock:
            log = self._disk(disk_id).cbt_log
            return dict(log) if log is not None else None

    def set_cbt_log(self, disk_id: str, log: dict | None) -> None:
        with self._lock:
            disk = self._disk(disk_id)
            disk.cbt_log = dict(log) if log is not None else None
            self._save_meta(disk)

    def resize(self, disk_id: str, new_size: int) -> None:
        with self._lock:
            disk = self._disk(disk_id)
            if new_size < 0:
                raise DiskError(f"invalid virtual size {new_size}")
            old_blocks = len(disk.segments)
            new_blocks = _blocks_for(new_size)
            if new_size < disk.virtual_size and new_size % BLOCK_SIZE and disk.has_data:
                # The kept part of the new last block must read as zeros past the new end
                # if the disk grows again.
                tail = new_size % BLOCK_SIZE
                self._write_locked(disk, new_size, bytes(min(BLOCK_SIZE - tail,
                                                             disk.virtual_size - new_size)))
            if new_blocks < old_blocks:
                self._release_blocks(disk, range(new_blocks, old_blocks))
                del disk.segments[new_blocks:]
                del disk.versions[new_blocks:]
            else:
                disk.segments.extend(array("I", bytes(4 * (new_blocks - old_blocks))))
                disk.versions.extend(array("Q", bytes(8 * (new_blocks - old_blocks))))
            disk.virtual_size = new_size
            self._save(disk)
            self._delete_unused_segments()

    def read(self, disk_id: str, offset: int, length: int) -> bytes:
        reader = self.open_reader(disk_id)
        try:
            return reader.read(offset, length)
        finally:
            reader.close()

    def write(self, disk_id: str, offset: int, data: bytes) -> None:
        with self._lock:
            disk = self._disk(disk_id)
            self._write_locked(disk, offset, data)

    def open_reader(self, disk_id: str) -> DiskReader:
        with self._lock:
            disk = self._disk(disk_id)
            if not disk.has_data:
                raise DiskError(f"disk {disk_id} has no data (data_destroy was called)")
            paths = {number: self._segment_path(number) for number in disk.counts}
            return DiskReader(disk_id, disk.virtual_size, disk.segments[:], paths)

    def changed_blocks(self, from_id: str, to_id: str) -> bytes:
        with self._lock:
            old = self._disk(from_id)
            new = self._disk(to_id)
            if from_id == to_id:
                raise DiskError(f"cannot compare disk {from_id} with itself")
            if old.lineage != new.lineage:
                raise DiskError(f"disks {from_id} and {to_id} are unrelated")
            old_versions = old.versions
            new_versions = new.versions[:]
        nblocks = len(new_versions)
        bitmap = bytearray(-(-nblocks // 8))
        shared = min(nblocks, len(old_versions))
        for i in range(nblocks):
            if i >= shared or old_versions[i] != new_versions[i]:
                if i >= shared and not new_versions[i]:
                    continue   # grown by resize and never written: zeros on both sides
                bitmap[i >> 3] |= 0x80 >> (i & 7)
        return bytes(bitmap)

    def guest_write(self, disk_id: str, blocks: int, rng: random.Random) -> list[int]:
        with self._lock:
            disk = self._disk(disk_id)
            nblocks = len(disk.segments)
            if blocks > nblocks:
                raise DiskError(f"disk {disk_id} has only {nblocks} blocks, {blocks} asked")
            chosen = sorted(rng.sample(range(nblocks), blocks))
            for index in chosen:
                offset = index * BLOCK_SIZE
                length = min(BLOCK_SIZE, disk.virtual_size - offset)
                self._write_locked(disk, offset, rng.randbytes(length))
            return chosen

    def fill(self, disk_id: str, seed: int, profile: content.ContentProfile) -> None:
        size = self.virtual_size(disk_id)
        for index in range(-(-size // content.REGION_SIZE)):
            kind = content.region_kind(seed, index, profile)
            offset = index * content.REGION_SIZE
            length = min(content.REGION_SIZE, size - offset)
            if kind == "zero":
                with self._lock:
                    disk = self._disk(disk_id)
                    if not any(disk.segments[offset // BLOCK_SIZE:
                                             _blocks_for(offset + length)]):
                        continue   # already zeros: keep it unallocated
            region = content.generate_region(seed, index, kind)
            self.write(disk_id, offset, region[:length])

    def close(self) -> None:
        """Write every map in full (journals emptied) and close file descriptors."""
        with self._lock:
            for disk in self._disks.values():
                if disk.journal_records:
                    self._save(disk)
            for fd in self._fds.values():
                os.close(fd)
            self._fds = {}

    # ----- writes -----------------------------------------------------------------------

    def _write_locked(self, disk: _Disk, offset: int, data: bytes) -> None:
        if not disk.has_data:
            raise DiskError(f"disk {disk.id} has no data (data_destroy was called)")
        if offset < 0 or offset + len(data) > disk.virtual_size:
            raise DiskError(f"write of {len(data)} bytes at {offset} is outside disk {disk.id}"
                            f" of size {disk.virtual_size}")
        if not data:
            return
        first = offset // BLOCK_SIZE
        last = (offset + len(data) - 1) // BLOCK_SIZE
        if self._capacity is not None:
            current = disk.current_segment
            new_bytes = BLOCK_SIZE * sum(1 for i in range(first, last + 1)
                                         if not current or disk.segments[i] != current)
            if new_bytes and not self._capacity(disk.id, new_bytes):
                raise DiskFullError(f"no space for {new_bytes} more bytes on disk {disk.id}")
        # Complete partial first / last blocks with their current content (copy-on-write).
        block_start = first * BLOCK_SIZE
        block_end = min((last + 1) * BLOCK_SIZE, disk.virtual_size)
        head = self._read_locked(disk, block_start, offset - block_start)
        tail_start = offset + len(data)
        tail = self._read_locked(disk, tail_start, block_end - tail_start)
        segment = self._writable_segment(disk)
        written = os.pwritev(self._fd(segment), [head, data, tail], block_start)
        if written != block_end - block_start:
            raise DiskError(f"short write to segment {segment}: {written} bytes")
        version = self._next_version
        self._next_version += last - first + 1
        records = []
        relatives = None
        for i in range(first, last + 1):
            previous = disk.segments[i]
            if previous != segment:
                disk.segments[i] = segment
                disk.counts[segment] += 1
                self._refcounts[segment] += 1
                self._live[segment] += 1   # the current segment is never shared
                if previous:
                    if relatives is None:
                        relatives = self._relatives(disk)
                    self._drop_reference(disk, i, previous, relatives)
            disk.versions[i] = version
            records.append(_JOURNAL_RECORD.pack(i, segment, version))
            version += 1
        self._append_journal(disk, b"".join(records), len(records))

    def _read_locked(self, disk: _Disk, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        fds = {number: self._fd(number) for number in
               set(disk.segments[offset // BLOCK_SIZE:_blocks_for(offset + length)]) if number}
        return _read_blocks(disk.segments, fds, offset, length)

    def _writable_segment(self, disk: _Disk) -> int:
        if not disk.current_segment:
            number = self._next_segment
            self._next_segment += 1
            with open(self._segment_path(number), "xb"):
                pass
            disk.current_segment = number
            disk.owned.append(number)
            self._save_meta(disk)
        return disk.current_segment

    # ----- freeing space ----------------------------------------------------------------

    def _relatives(self, disk: _Disk) -> list[_Disk]:
        """The other disks that may share segments with `disk`: its snapshots and clones."""
        return [other for other in self._disks.values()
                if other is not disk and other.lineage == disk.lineage]

    def _drop_reference(self, disk: _Disk, index: int, segment: int,
                        relatives: list[_Disk]) -> None:
        """Block `index` of `disk` no longer uses `segment`; free it if no disk does."""
        disk.counts[segment] -= 1
        if not disk.counts[segment]:
            del disk.counts[segment]
        self._refcounts[segment] -= 1
        for other in relatives:
            if index < len(other.segments) and other.segments[index] == segment:
                return
        self._live[segment] -= 1
        if self._refcounts[segment]:
            _punch_hole(self._fd(segment), index * BLOCK_SIZE, BLOCK_SIZE)
            return
        del self._refcounts[segment]
        del self._live[segment]
        if segment != disk.current_segment:
            self._delete_segment(segment)

    def _release_blocks(self, disk: _Disk, indices: range) -> None:
        relatives = self._relatives(disk)
        for i in indices:
            segment = disk.segments[i]
            if segment:
                disk.segments[i] = 0
                self._drop_reference(disk, i, segment, relatives)

    def _pass_on_ownership(self, disk: _Disk) -> None:
        """After `disk` let go of its blocks, segments snapshots still use are charged to
        one of those snapshots."""
        for number in disk.owned:
            if not self._refcounts[number]:
                continue
            heir = min((other for other in self._disks.values()
                        if other is not disk and other.counts[number]), key=lambda d: d.id)
            heir.owned.append(number)
            self._save_meta(heir)
        disk.owned = []

    def _delete_segment(self, number: int) -> None:
        fd = self._fds.pop(number, None)
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(self._segment_path(number))
        except FileNotFoundError:
            pass
        for disk in self._disks.values():
            if number in disk.owned:
                disk.owned.remove(number)
                self._save_meta(disk)

    def _delete_unused_segments(self) -> None:
        in_use = set(self._refcounts)
        in_use.update(disk.current_segment for disk in self._disks.values())
        for name in os.listdir(self._path("segments")):
            number = int(name.split(".")[0])
            if number not in in_use:
                self._delete_segment(number)

    # ----- persistence ------------------------------------------------------------------

    def _load(self) -> None:
        for name in sorted(os.listdir(self._path("disks"))):
            if not name.endswith(".json"):
                continue
            disk_id = name[:-len(".json")]
            with open(self._disk_path(disk_id, ".json")) as f:
                meta = json.load(f)
            disk = _Disk(disk_id, meta["virtual_size"], meta["lineage"])
            disk.has_data = meta["has_data"]
            disk.current_segment = meta["current_segment"]
            disk.owned = meta["owned"]
            disk.cbt_log = meta.get("cbt_log")
            self._load_map(disk)
            disk.recount()
            self._disks[disk_id] = disk
            self._refcounts.update(disk.counts)
        self._live = self._count_live_blocks()
        self._next_version = 1 + max((max(d.versions, default=0) for d in self._disks.values()),
                                     default=0)
        numbers = [int(name.split(".")[0]) for name in os.listdir(self._path("segments"))]
        self._next_segment = 1 + max(numbers, default=0)

    def _count_live_blocks(self) -> collections.Counter[int]:
        """Distinct blocks held in each segment; only disks of one lineage share segments."""
        live: collections.Counter[int] = collections.Counter()
        lineages = collections.defaultdict(list)
        for disk in self._disks.values():
            lineages[disk.lineage].append(disk.segments)
        for maps in lineages.values():
            if len(maps) == 1:
                live.update(maps[0])
                continue
            for i in range(max(len(m) for m in maps)):
                live.update({m[i] for m in maps if i < len(m)})
        del live[0]
        return live

    def _load_map(self, disk: _Disk) -> None:
        nblocks = len(disk.segments)
        try:
            with open(self._disk_path(disk.id, ".map"), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if data:
            if data[:8] != _MAP_MAGIC:
                raise DiskError(f"disk {disk.id}: corrupt block map")
            (stored,) = struct.unpack_from("<Q", data, 8)
            segments = array("I")
            segments.frombytes(data[16:16 + 4 * stored])
            versions = array("Q")
            versions.frombytes(data[16 + 4 * stored:16 + 12 * stored])
            keep = min(stored, nblocks)
            disk.segments[:keep] = segments[:keep]
            disk.versions[:keep] = versions[:keep]
        try:
            with open(self._disk_path(disk.id, ".journal"), "rb") as f:
                journal = f.read()
        except FileNotFoundError:
            journal = b""
        usable = len(journal) - len(journal) % _JOURNAL_RECORD.size   # torn last record
        for index, segment, version in _JOURNAL_RECORD.iter_unpack(journal[:usable]):
            if index < nblocks:
                disk.segments[index] = segment
                disk.versions[index] = version
        disk.journal_records = usable // _JOURNAL_RECORD.size

    def _save(self, disk: _Disk) -> None:
        """Write meta and the full map atomically, then empty the journal."""
        self._save_meta(disk)
        header = _MAP_MAGIC + struct.pack("<Q", len(disk.segments))
        self._atomic_write(self._disk_path(disk.id, ".map"),
                           header + disk.segments.tobytes() + disk.versions.tobytes())
        try:
            os.unlink(self._disk_path(disk.id, ".journal"))
        except FileNotFoundError:
            pass
        disk.journal_records = 0

    def _save_meta(self, disk: _Disk) -> None:
        self._atomic_write(self._disk_path(disk.id, ".json"), json.dumps(disk.meta()).encode())

    def _append_journal(self, disk: _Disk, records: bytes, count: int) -> None:
        with open(self._disk_path(disk.id, ".journal"), "ab") as f:
            f.write(records)
        disk.journal_records += count
        if disk.journal_records > max(1024, len(disk.segments)):
            self._save(disk)   # keep replay on restart short

    def _atomic_write(self, path: str, data: bytes) -> None:
        temporary = path + ".tmp"
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)

    # ----- helpers ----------------------------------------------------------------------

    def _disk(self, disk_id: str) -> _Disk:
        try:
            return self._disks[disk_id]
        except KeyError:
            raise DiskError(f"unknown disk {disk_id!r}") from None

    def _fd(self, segment: int) -> int:
        fd = self._fds.get(segment)
        if fd is None:
            fd = self._fds[segment] = os.open(self._segment_path(segment), os.O_RDWR)
        return fd

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _disk_path(self, disk_id: str, suffix: str) -> str:
        return self._path("disks", disk_id + suffix)

    def _segment_path(self, number: int) -> str:
        return self._path("segments", f"{number}.seg")
