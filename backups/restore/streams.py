"""Byte streams a restore sends, built on the fly from a restore point's verified chunks.

xapi refuses chunked encoding, so every upload carries a Content-Length computed up front
from the manifest alone: which chunks hold data is known before any chunk is read (a chunk
list entry is null for an all-zero chunk). Nothing is staged in a full-size temporary file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ..formats.vhd import DEFAULT_BLOCK_SIZE, FOOTER_SIZE, HEADER_SIZE, MAX_VHD_SIZE, SECTOR, write_vhd_stream
from ..formats.xva import BLOCK, CHUNK_SIZE, XvaWriter

# Checksum member payloads: XXH64 as 16 hex digits, SHA-1 as 40 (xenapi-notes section 6).
_DIGEST_LENGTH = {"xxhash": 16, "sha1": 40}


class StreamLengthMismatch(Exception):
    """The stream came out longer or shorter than the Content-Length announced."""


def _padded(size: int) -> int:
    return size + (-size % BLOCK)


def nonzero_ranges(disk) -> list[tuple[int, int]]:
    """(offset, length) of the manifest chunks that hold data."""
    return [(index * disk.chunk_size, min(disk.chunk_size, disk.virtual_size - index * disk.chunk_size))
            for index, chunk_id in enumerate(disk.chunks) if chunk_id is not None]


def xva_chunks_with_data(disk, read_chunk: Callable[[str], bytes] | None = None) -> set[int]:
    """Indexes of the 1 MiB XVA chunks that hold data.

    With store chunks of at most 1 MiB this follows from the manifest. Larger store chunks may
    hold all-zero 1 MiB pieces that the XVA leaves out, so their content is read (and verified)
    once more: `read_chunk(chunk_id)` gives it."""
    found = set()
    for index, chunk_id in enumerate(disk.chunks):
        if chunk_id is None:
            continue
        start = index * disk.chunk_size
        length = min(disk.chunk_size, disk.virtual_size - start)
        if disk.chunk_size <= CHUNK_SIZE:
            found.update(range(start // CHUNK_SIZE, (start + length - 1) // CHUNK_SIZE + 1))
            continue
        if read_chunk is None:
            raise ValueError("store chunks larger than 1 MiB need read_chunk to find their zero pieces")
        data = memoryview(read_chunk(chunk_id))
        zero = bytes(CHUNK_SIZE)
        for within in range(0, length, CHUNK_SIZE):
            piece = data[within:within + CHUNK_SIZE]
            if piece != zero[:len(piece)]:
                found.add((start + within) // CHUNK_SIZE)
    return found


def xva_length(ova_xml: bytes, disks: list[tuple[int, set[int]]], checksum: str = "xxhash") -> int:
    """Exact size of the XVA XvaWriter produces: disks are (virtual size, XVA chunks with data)."""
    digest = _padded(_DIGEST_LENGTH[checksum])
    total = BLOCK + _padded(len(ova_xml)) + 2 * BLOCK
    for virtual_size, with_data in disks:
        if virtual_size == 0:
            continue
        last = (virtual_size - 1) // CHUNK_SIZE
        members = {0, last} | {i for i in with_data if i <= last}
        for index in members:
            length = CHUNK_SIZE if index < last else virtual_size - last * CHUNK_SIZE
            total += BLOCK + _padded(length) + BLOCK + digest
    return total


def vhd_fits(virtual_size: int) -> bool:
    return 0 < virtual_size <= MAX_VHD_SIZE and virtual_size % SECTOR == 0


def vhd_length(virtual_size: int, data_ranges: Iterable[tuple[int, int]], block_size: int = DEFAULT_BLOCK_SIZE) -> int:
    """Exact size of the dynamic VHD write_vhd_stream produces for these data ranges."""
    entries = -(-virtual_size // block_size)
    allocated = set()
    for offset, length in data_ranges:
        if length > 0:
            allocated.update(range(offset // block_size, min(entries, -(-(offset + length) // block_size))))
    bat_bytes = -(-entries * 4 // SECTOR) * SECTOR
    bitmap_size = -(-(block_size // SECTOR // 8) // SECTOR) * SECTOR
    return FOOTER_SIZE + HEADER_SIZE + bat_bytes + len(allocated) * (bitmap_size + block_size) + FOOTER_SIZE


@dataclass
class Upload:
    """A body for PUT: its exact length and the blocks to send."""

    length: int
    blocks: Iterator[bytes]


def checked(blocks: Iterable[bytes], length: int) -> Iterator[bytes]:
    """Pass blocks through, failing loudly if they do not add up to the announced length."""
    sent = 0
    for block in blocks:
        sent += len(block)
        if sent > length:
            raise StreamLengthMismatch(f"the stream grew past its announced {length} bytes")
        yield block
    if sent != length:
        raise StreamLengthMismatch(f"the stream ended at {sent} of its announced {length} bytes")


def xva_upload(ova_xml: bytes, disks: list[tuple[str, int, set[int], Iterable[tuple[int, bytes]]]],
               checksum: str = "xxhash") -> Upload:
    """disks: (ova.xml ref, virtual size, XVA chunks with data, (offset, data) pieces with data)."""
    length = xva_length(ova_xml, [(size, with_data) for _, size, with_data, _ in disks], checksum)
    writer = XvaWriter(ova_xml, checksum=checksum)
    blocks = writer.stream([(ref, size, pieces) for ref, size, _, pieces in disks])
    return Upload(length, checked(blocks, length))


def vhd_upload(virtual_size: int, data_ranges: list[tuple[int, int]], pieces: Iterable[tuple[int, bytes]]) -> Upload:
    length = vhd_length(virtual_size, data_ranges)
    return Upload(length, checked(write_vhd_stream(virtual_size, pieces, data_ranges), length))


def raw_upload(virtual_size: int, pieces: Iterable[tuple[int, bytes]]) -> Upload:
    """The whole disk, zeros included (for disks a VHD cannot describe)."""
    def blocks():
        position = 0
        for offset, data in pieces:
            while position < offset:
                step = min(CHUNK_SIZE, offset - position)
                yield bytes(step)
                position += step
            yield data
            position = offset + len(data)
        while position < virtual_size:
            step = min(CHUNK_SIZE, virtual_size - position)
            yield bytes(step)
            position += step
    return Upload(virtual_size, checked(blocks(), virtual_size))
