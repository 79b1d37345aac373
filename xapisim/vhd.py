"""Dynamic VHD streams, as xapi's /export_raw_vdi?format=vhd sends and /import_raw_vdi reads.

File layout written: footer copy (512) | dynamic header (1024) | BAT (4 bytes per 2 MiB
block, padded to 512) | for each present block in index order: sector bitmap (512) and
2 MiB of data | footer. All fields are big-endian; checksums are the one's complement of the
byte sum with the checksum field taken as zero.
"""
from __future__ import annotations

import struct
import uuid as uuid_module
from typing import BinaryIO, Iterator

BLOCK_SIZE = 2 * 1024 * 1024
SECTOR = 512
_SECTORS_PER_BLOCK = BLOCK_SIZE // SECTOR
_BITMAP_SIZE = _SECTORS_PER_BLOCK // 8          # 512: already a whole sector
_ABSENT = 0xFFFFFFFF
_VHD_EPOCH = 946684800                          # 2000-01-01T00:00:00Z
_DYNAMIC = 3
_DIFFERENCING = 4
_HEADER_OFFSET = 512
_BAT_OFFSET = 512 + 1024
# "tap\0" is what XenServer's blktap writes; qemu then trusts current_size over the CHS
# geometry, so the virtual size survives exactly.
_CREATOR_APP = b"tap\0"
_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")
_HEADER = struct.Struct(">8sQQIIII16sI4s512s192s256s")


class VhdFormatError(Exception):
    """The stream is not a dynamic VHD this reader can handle."""


def _checksum(data: bytes) -> int:
    return ~sum(data) & 0xFFFFFFFF


def _geometry(size: int) -> tuple[int, int, int]:
    """Cylinders, heads, sectors per track: the algorithm of the VHD specification."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        sectors, heads = 255, 16
        cylinder_heads = total // sectors
    else:
        sectors = 17
        cylinder_heads = total // sectors
        heads = max((cylinder_heads + 1023) // 1024, 4)
        if cylinder_heads >= heads * 1024 or heads > 16:
            sectors, heads = 31, 16
            cylinder_heads = total // sectors
        if cylinder_heads >= heads * 1024:
            sectors, heads = 63, 16
            cylinder_heads = total // sectors
    return cylinder_heads // heads, heads, sectors


def _footer(size: int, disk_uuid: bytes, timestamp: int, disk_type: int = _DYNAMIC) -> bytes:
    cylinders, heads, sectors = _geometry(size)
    fields = [b"conectix", 2, 0x00010000, _HEADER_OFFSET, timestamp, _CREATOR_APP,
              0x00010000, b"Wi2k", size, size, cylinders, heads, sectors, disk_type, 0,
              disk_uuid, 0, bytes(427)]
    unsigned = _FOOTER.pack(*fields)
    fields[14] = _checksum(unsigned)
    return _FOOTER.pack(*fields)


def _dynamic_header(entries: int, parent_uuid: bytes = bytes(16), parent_name: str = "") -> bytes:
    name = parent_name.encode("utf-16-be")[:512]
    fields = [b"cxsparse", 0xFFFFFFFFFFFFFFFF, _BAT_OFFSET, 0x00010000, entries, BLOCK_SIZE,
              0, parent_uuid, 0, bytes(4), name, bytes(192), bytes(256)]
    fields[6] = _checksum(_HEADER.pack(*fields))
    return _HEADER.pack(*fields)


def _block_ranges(ranges: list[tuple[int, int]], size: int) -> dict[int, list[tuple[int, int]]]:
    """Split byte ranges by 2 MiB VHD block: {block index: [(offset, length), ...]}."""
    blocks: dict[int, list[tuple[int, int]]] = {}
    for offset, length in ranges:
        end = min(offset + length, size)
        while offset < end:
            index = offset // BLOCK_SIZE
            piece_end = min(end, (index + 1) * BLOCK_SIZE)
            blocks.setdefault(index, []).append((offset, piece_end - offset))
            offset = piece_end
    return blocks


def _bitmap(pieces: list[tuple[int, int]], block_start: int) -> bytes:
    bits = 0
    for offset, length in pieces:
        first = (offset - block_start) // SECTOR
        last = (offset - block_start + length - 1) // SECTOR
        bits |= ((1 << (last - first + 1)) - 1) << (_SECTORS_PER_BLOCK - 1 - last)
    return bits.to_bytes(_BITMAP_SIZE, "big")   # sector 0 is the MSB of byte 0


def write_vhd(reader, *, changed: list[tuple[int, int]] | None = None,
              uuid: bytes | None = None, timestamp: int = 0,
              parent_uuid: bytes | None = None, parent_name: str = "") -> Iterator[bytes]:
    """Yield a dynamic VHD of `reader` (every allocated extent), or with `changed` byte ranges
    what xapi sends for format=vhd&base=<older snapshot>: a differencing VHD (disk type 4,
    header naming the base as parent) of every 2 MiB block that holds a change, whole, with
    all sector bits set (vhd-tool's Vhd_input.vhd ~from in ocaml-vhd: "We'll always set all
    bitmap bits"). `timestamp` is Unix time, stored as seconds since 2000 (0 stays 0)."""
    disk_size = reader.size
    size = -(-disk_size // SECTOR) * SECTOR   # a VHD counts whole sectors: pad with zeros
    disk_uuid = uuid if uuid is not None else uuid_module.uuid4().bytes
    vhd_time = max(timestamp - _VHD_EPOCH, 0) if timestamp else 0
    delta = changed is not None
    footer = _footer(size, disk_uuid, vhd_time, _DIFFERENCING if delta else _DYNAMIC)
    entries = -(-size // BLOCK_SIZE)
    blocks = _block_ranges(changed if delta else reader.allocated_extents(), disk_size)

    bat_size = -(-entries * 4 // SECTOR) * SECTOR
    next_sector = (_BAT_OFFSET + bat_size) // SECTOR
    bat = bytearray(b"\xff" * bat_size)
    for index in sorted(blocks):
        struct.pack_into(">I", bat, index * 4, next_sector)
        next_sector += (_BITMAP_SIZE + BLOCK_SIZE) // SECTOR
    header = _dynamic_header(entries, parent_uuid or bytes(16), parent_name) if delta else _dynamic_header(entries)
    yield footer + header + bytes(bat)

    full_bitmap = b"\xff" * _BITMAP_SIZE
    for index in sorted(blocks):
        start = index * BLOCK_SIZE
        length = min(BLOCK_SIZE, disk_size - start)
        data = reader.read(start, length)
        bitmap = full_bitmap if length == BLOCK_SIZE or delta else \
            _bitmap([(start, min(BLOCK_SIZE, size - start))], start)
        yield b"".join((bitmap, data, bytes(BLOCK_SIZE - length)))
    yield footer


# ----- reading --------------------------------------------------------------------------

class _Source:
    """Forward reads on any stream; seeks when the stream can."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.position = 0
        try:
            self.seekable = stream.seekable()
        except (AttributeError, OSError):
            self.seekable = False

    def read(self, size: int, what: str) -> bytes:
        buffer = bytearray()
        while len(buffer) < size:
            more = self.stream.read(size - len(buffer))
            if not more:
                raise VhdFormatError(f"stream ended inside {what}")
            buffer += more
        self.position += size
        return bytes(buffer)

    def go_to(self, offset: int, what: str) -> None:
        if offset == self.position:
            return
        if self.seekable:
            self.stream.seek(offset)
            self.position = offset
            return
        if offset < self.position:
            raise VhdFormatError(
                f"{what} is at byte {offset}, before the current position {self.position}; "
                "a non-seekable VHD stream must have its BAT before the blocks it lists "
                "(pass a seekable file for other layouts)")
        while self.position < offset:
            self.read(min(offset - self.position, 1 << 20), f"the gap before {what}")


def _parse_footer(data: bytes) -> tuple[int, int, int]:
    fields = _FOOTER.unpack(data)
    if fields[0] != b"conectix":
        raise VhdFormatError("not a VHD: footer cookie 'conectix' missing at the start")
    unsigned = _FOOTER.pack(*fields[:14], 0, *fields[15:])
    if _checksum(unsigned) != fields[14]:
        raise VhdFormatError("VHD footer checksum mismatch")
    disk_type = fields[13]
    if disk_type not in (_DYNAMIC, _DIFFERENCING):
        raise VhdFormatError(f"only dynamic VHDs are supported, this one has type {disk_type}")
    return fields[3], fields[9], disk_type   # header offset, current size, type


def read_vhd(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, data) for the sectors each block's bitmap marks present.

    Blocks are read in file order, so a non-seekable stream works whenever the BAT comes
    before the blocks (as xapi, vhd-tool and qemu-img write them)."""
    source = _Source(stream)
    header_offset, size, _ = _parse_footer(source.read(SECTOR, "the VHD footer copy"))
    source.go_to(header_offset, "the dynamic header")
    header = _HEADER.unpack(source.read(_HEADER.size, "the dynamic header"))
    if header[0] != b"cxsparse":
        raise VhdFormatError("dynamic header cookie 'cxsparse' missing")
    if _checksum(_HEADER.pack(*header[:6], 0, *header[7:])) != header[6]:
        raise VhdFormatError("VHD dynamic header checksum mismatch")
    table_offset, entries, block_size = header[2], header[4], header[5]
    if block_size < SECTOR or block_size % SECTOR or block_size > 256 * 1024 * 1024:
        raise VhdFormatError(f"unsupported VHD block size {block_size}")
    if entries < -(-size // block_size):
        raise VhdFormatError(f"BAT has {entries} entries, too few for {size} bytes")
    bitmap_size = -(-(block_size // SECTOR // 8) // SECTOR) * SECTOR
    source.go_to(table_offset, "the BAT")
    bat = struct.unpack(f">{entries}I", source.read(entries * 4, "the BAT"))
    present = sorted((sector, index) for index, sector in enumerate(bat) if sector != _ABSENT)
    for sector, index in present:
        start = index * block_size
        if start >= size:
            continue
        source.go_to(sector * SECTOR, f"block {index}")
        bitmap = source.read(bitmap_size, f"the bitmap of block {index}")
        data = source.read(block_size, f"block {index}")
        valid = min(block_size, size - start) // SECTOR
        for first, last in _present_runs(bitmap, valid):
            yield start + first * SECTOR, data[first * SECTOR:last * SECTOR]


def _present_runs(bitmap: bytes, sectors: int) -> Iterator[tuple[int, int]]:
    """Runs [first, last) of sectors whose bitmap bit (MSB-first) is set."""
    full = sectors // 8
    if bitmap[:full] == b"\xff" * full and all(
            bitmap[full] & (0x80 >> bit) for bit in range(sectors % 8)):
        yield 0, sectors
        return
    run_start = None
    for sector in range(sectors):
        is_set = bitmap[sector >> 3] & (0x80 >> (sector & 7))
        if is_set and run_start is None:
            run_start = sector
        elif not is_set and run_start is not None:
            yield run_start, sector
            run_start = None
    if run_start is not None:
        yield run_start, sectors


def vhd_layout(stream: BinaryIO) -> tuple[int, list[int]]:
    """(virtual size, BAT) of a VHD file: a helper for tests and diagnostics."""
    footer = stream.read(SECTOR)
    header_offset, size, _ = _parse_footer(footer)
    stream.seek(header_offset)
    header = _HEADER.unpack(stream.read(_HEADER.size))
    stream.seek(header[2])
    entries = header[4]
    return size, list(struct.unpack(f">{entries}I", stream.read(entries * 4)))

