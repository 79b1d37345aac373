"""Changed-block bitmaps of ``VDI.list_changed_blocks`` (xenapi-notes section 7).

The bitmap is base64, one bit per 64 KiB block, most significant bit first within each
byte: block i is changed when ``byte[i >> 3] & (0x80 >> (i & 7))``.
"""
from __future__ import annotations

import base64
import binascii
import re

CBT_BLOCK_SIZE = 64 * 1024


class CbtError(Exception):
    """The bitmap cannot be decoded or does not cover the disk."""


def _decode(bitmap_b64: str, virtual_size: int, block_size: int) -> tuple[bytes, int]:
    if block_size <= 0 or virtual_size < 0:
        raise ValueError("block_size must be positive and virtual_size not negative")
    try:
        bitmap = base64.b64decode("".join(bitmap_b64.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CbtError(f"changed-block bitmap is not valid base64: {exc}") from exc
    blocks = -(-virtual_size // block_size)
    if len(bitmap) * 8 < blocks:
        raise CbtError(f"changed-block bitmap covers {len(bitmap) * 8} blocks, the disk has "
                       f"{blocks} (was the VDI resized?)")
    return bitmap, blocks


def changed_ranges(bitmap_b64: str, virtual_size: int,
                   block_size: int = CBT_BLOCK_SIZE) -> list[tuple[int, int]]:
    """Merged (offset, length) byte ranges of the changed blocks, clipped to virtual_size.

    Bits past the last block are ignored.
    """
    bitmap, blocks = _decode(bitmap_b64, virtual_size, block_size)
    changed_blocks: list[tuple[int, int]] = []  # [start, end) in block numbers
    # Zero bytes are skipped in C by the regex; only non-zero stretches are walked per byte.
    for stretch in re.finditer(rb"[^\x00]+", bitmap[: -(-blocks // 8)]):
        for byte_index in range(stretch.start(), stretch.end()):
            byte = bitmap[byte_index]
            for bit in range(8):
                if byte & (0x80 >> bit):
                    block = byte_index * 8 + bit
                    if changed_blocks and changed_blocks[-1][1] == block:
                        changed_blocks[-1] = (changed_blocks[-1][0], block + 1)
                    else:
                        changed_blocks.append((block, block + 1))
    ranges = []
    for first, end in changed_blocks:
        if first >= blocks:
            break
        offset = first * block_size
        ranges.append((offset, min(end * block_size, virtual_size) - offset))
    return ranges


def changed_bytes(bitmap_b64: str, virtual_size: int, block_size: int = CBT_BLOCK_SIZE) -> int:
    """How many bytes of the disk the bitmap marks as changed."""
    return sum(length for _, length in changed_ranges(bitmap_b64, virtual_size, block_size))
