"""Streamed dynamic / differencing VHD, as ``/export_raw_vdi?format=vhd[&base=]`` sends it.

Layout (Microsoft VHD specification): a 512-byte footer copy, the 1024-byte dynamic header,
the block allocation table (BAT, one big-endian sector number per block, 0xFFFFFFFF for
"not present"), then blocks, each a sector bitmap (one bit per 512-byte sector, most
significant bit first, padded to 512 bytes) followed by the block's data, and the footer.

The reader reads forward only: it keeps the BAT and skips to each block in file order, so
blocks may appear in any order relative to their index (qemu-img writes them out of order).
A layout that would need seeking backwards (BAT after the blocks) is refused.
"""
from __future__ import annotations

import re
import struct
import time
import uuid
from typing import BinaryIO, Iterable, Iterator

SECTOR = 512
FOOTER_SIZE = 512
HEADER_SIZE = 1024
DEFAULT_BLOCK_SIZE = 2 << 20
UNUSED = 0xFFFFFFFF
DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING = 2, 3, 4
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, VHD timestamps count from here
MAX_VHD_SIZE = 2040 << 30  # xapi refuses larger VHD exports (VDI_TOO_LARGE)


class VhdError(Exception):
    """The VHD stream is damaged, unsupported, or needs seeking backwards."""


def _checksum(data: bytes, field_at: int) -> int:
    total = sum(data[:field_at]) + sum(data[field_at + 4:])
    return ~total & 0xFFFFFFFF


class _ForwardReader:
    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.position = 0

    def read(self, n: int, what: str) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self._stream.readinto(view[got:]) if hasattr(self._stream, "readinto") \
                else self._copy(view[got:])
            if not k:
                raise VhdError(f"VHD stream ended inside the {what} at byte "
                               f"{self.position + got} (truncated)")
            got += k
        self.position += n
        return bytes(buf) if n <= 4096 else buf

    def _copy(self, view) -> int:
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    def skip_to(self, target: int, what: str) -> None:
        if target < self.position:
            raise VhdError(f"the {what} lies at byte {target}, before the current position "
                           f"{self.position}: this VHD layout needs seeking backwards, which a "
                           "stream cannot do")
        while self.position < target:
            self.read(min(target - self.position, 4 << 20), what)


def read_vhd_stream(stream: BinaryIO) -> tuple[int, Iterator[tuple[int, bytes]]]:
    """(virtual size, iterator of (offset, data) of the sectors the VHD holds)."""
    source = _ForwardReader(stream)
    footer = source.read(FOOTER_SIZE, "footer")
    if footer[:8] != b"conectix":
        raise VhdError("not a VHD stream (no 'conectix' footer cookie at byte 0)")
    if struct.unpack(">I", footer[64:68])[0] != _checksum(footer, 64):
        raise VhdError("VHD footer checksum mismatch")
    header_offset, = struct.unpack(">Q", footer[16:24])
    virtual_size, = struct.unpack(">Q", footer[48:56])
    disk_type, = struct.unpack(">I", footer[60:64])
    if disk_type not in (DISK_DYNAMIC, DISK_DIFFERENCING):
        raise VhdError(f"VHD disk type {disk_type} is not dynamic (3) or differencing (4)")
    source.skip_to(header_offset, "dynamic header")
    header = source.read(HEADER_SIZE, "dynamic header")
    if header[:8] != b"cxsparse":
        raise VhdError("VHD dynamic header cookie 'cxsparse' missing")
    if struct.unpack(">I", header[36:40])[0] != _checksum(header, 36):
        raise VhdError("VHD dynamic header checksum mismatch")
    table_offset, = struct.unpack(">Q", header[16:24])
    entries, block_size = struct.unpack(">II", header[28:36])
    if block_size % SECTOR or not block_size:
        raise VhdError(f"VHD block size {block_size} is not a multiple of 512")
    if entries * block_size < virtual_size:
        raise VhdError(f"VHD BAT has {entries} entries of {block_size} bytes, too few for "
                       f"{virtual_size} bytes")
    source.skip_to(table_offset, "block allocation table")
    bat = struct.unpack(f">{entries}I", source.read(entries * 4, "block allocation table"))
    bitmap_size = -(-(block_size // SECTOR // 8) // SECTOR) * SECTOR
    present = sorted((sector, index) for index, sector in enumerate(bat) if sector != UNUSED)
    return virtual_size, _blocks(source, present, block_size, bitmap_size, virtual_size)


def _blocks(source, present, block_size, bitmap_size, virtual_size):
    full_bitmap = b"\xff" * (block_size // SECTOR // 8)
    for sector, index in present:
        what = f"block {index}"
        source.skip_to(sector * SECTOR, what)
        bitmap = source.read(bitmap_size, f"sector bitmap of {what}")
        data = memoryview(source.read(block_size, what))
        base = index * block_size
        if bitmap[: len(full_bitmap)] == full_bitmap:
            runs = [(0, block_size // SECTOR)]
        else:
            runs = _sector_runs(bitmap[: len(full_bitmap)])
        for first, end in runs:
            start, stop = base + first * SECTOR, min(base + end * SECTOR, virtual_size)
            if stop > start:
                yield start, bytes(data[first * SECTOR : first * SECTOR + stop - start])


def _sector_runs(bitmap: bytes) -> list[tuple[int, int]]:
    """[first, end) sector runs whose bits are set (MSB first)."""
    runs: list[tuple[int, int]] = []
    for stretch in re.finditer(rb"[^\x00]+", bitmap):
        for byte_index in range(stretch.start(), stretch.end()):
            byte = bitmap[byte_index]
            for bit in range(8):
                if byte & (0x80 >> bit):
                    sector = byte_index * 8 + bit
                    if runs and runs[-1][1] == sector:
                        runs[-1] = (runs[-1][0], sector + 1)
                    else:
                        runs.append((sector, sector + 1))
    return runs


# --------------------------------------------------------------------------- writer

def _footer(virtual_size: int, timestamp: int, unique_id: bytes) -> bytes:
    footer = bytearray(FOOTER_SIZE)
    struct.pack_into(">8sIIQI4sI4sQQHBBI", footer, 0,
                     b"conectix", 2, 0x00010000, FOOTER_SIZE, timestamp,
                     # 'tap\0' is the creator XenServer's blktap writes: readers such as qemu
                     # then take current_size as the disk size instead of the CHS geometry.
                     b"tap\0", 0x00010000, b"Wi2k", virtual_size, virtual_size,
                     *_geometry(virtual_size), DISK_DYNAMIC)
    footer[68:84] = unique_id
    struct.pack_into(">I", footer, 64, _checksum(footer, 64))
    return bytes(footer)


def _geometry(virtual_size: int) -> tuple[int, int, int]:
    """CHS geometry per the VHD specification's algorithm."""
    sectors = min(virtual_size // SECTOR, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cyl_heads = sectors // spt
    else:
        spt = 17
        cyl_heads = sectors // spt
        heads = max((cyl_heads + 1023) // 1024, 4)
        if cyl_heads >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cyl_heads = sectors // spt
        if cyl_heads >= heads * 1024:
            spt, heads = 63, 16
            cyl_heads = sectors // spt
    return cyl_heads // heads, heads, spt


def _dynamic_header(table_offset: int, entries: int, block_size: int) -> bytes:
    header = bytearray(HEADER_SIZE)
    struct.pack_into(">8sQQIII", header, 0, b"cxsparse", 0xFFFFFFFFFFFFFFFF, table_offset,
                     0x00010000, entries, block_size)
    struct.pack_into(">I", header, 36, _checksum(header, 36))
    return bytes(header)


def write_vhd_stream(virtual_size: int, pieces: Iterable[tuple[int, bytes]],
                     data_ranges: Iterable[tuple[int, int]], *,
                     block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[bytes]:
    """Yield a dynamic VHD holding the disk described by pieces.

    A streamed VHD needs its BAT before the blocks, so the caller states up front where
    data may be (data_ranges: (offset, length), e.g. the non-zero chunks of a backup
    manifest); every block touching a range is allocated, the rest stay sparse. pieces
    are (offset, data) in increasing offset order, inside data_ranges; gaps read as zeros.
    """
    if virtual_size % SECTOR or virtual_size <= 0:
        raise ValueError(f"virtual size {virtual_size} is not a positive multiple of 512")
    if virtual_size > MAX_VHD_SIZE:
        raise ValueError(f"VHD cannot describe {virtual_size} bytes (limit 2040 GiB)")
    entries = -(-virtual_size // block_size)
    allocated = set()
    for offset, length in data_ranges:
        if length > 0:
            allocated.update(range(offset // block_size,
                                   min(entries, -(-(offset + length) // block_size))))
    bat_bytes = -(-entries * 4 // SECTOR) * SECTOR
    table_offset = FOOTER_SIZE + HEADER_SIZE
    bitmap_size = -(-(block_size // SECTOR // 8) // SECTOR) * SECTOR
    first_block = table_offset + bat_bytes
    bat = [UNUSED] * entries
    for position, index in enumerate(sorted(allocated)):
        bat[index] = (first_block + position * (bitmap_size + block_size)) // SECTOR
    footer = _footer(virtual_size, max(0, int(time.time()) - VHD_EPOCH), uuid.uuid4().bytes)
    yield footer + _dynamic_header(table_offset, entries, block_size) \
        + struct.pack(f">{entries}I", *bat) + b"\xff" * (bat_bytes - entries * 4)

    bitmap = b"\xff" * (block_size // SECTOR // 8) + bytes(bitmap_size - block_size // 4096)
    pieces = iter(pieces)
    pending = None  # (offset, memoryview) not yet placed
    last_end = 0
    for index in sorted(allocated):
        block_start, block_end = index * block_size, (index + 1) * block_size
        block = bytearray(block_size)
        while True:
            if pending is None:
                nxt = next(pieces, None)
                if nxt is None:
                    break
                offset, data = nxt
                if offset < last_end:
                    raise ValueError(f"VHD piece at {offset} is out of order or overlaps")
                last_end = offset + len(data)
                if last_end > virtual_size:
                    raise ValueError(f"VHD piece at {offset} runs past the disk end")
                pending = (offset, memoryview(data).cast("B"))
            offset, view = pending
            if offset >= block_end:
                break
            if offset < block_start:
                raise ValueError(f"VHD piece at {offset} lies outside the declared data_ranges")
            take = min(len(view), block_end - offset)
            block[offset - block_start : offset - block_start + take] = view[:take]
            pending = (offset + take, view[take:]) if take < len(view) else None
        yield bitmap + bytes(block)
    if pending is not None or next(pieces, None) is not None:
        raise ValueError("VHD pieces lie outside the declared data_ranges")
    yield footer
