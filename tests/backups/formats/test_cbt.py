import base64

import pytest

from backups.formats.cbt import CbtError, changed_bytes, changed_ranges

K64 = 65536


def b64(*octets: int) -> str:
    return base64.b64encode(bytes(octets)).decode()


def test_bits_are_read_most_significant_first():
    # 0b1000_0001: blocks 0 and 7 changed; 0b0100_0000: block 9
    assert changed_ranges(b64(0b10000001, 0b01000000), 16 * K64) == [
        (0, K64), (7 * K64, K64), (9 * K64, K64)]


def test_adjacent_blocks_merge_across_byte_boundaries():
    assert changed_ranges(b64(0b00000011, 0b11100000), 16 * K64) == [(6 * K64, 5 * K64)]
    assert changed_ranges(b64(0xFF, 0xFF), 16 * K64) == [(0, 16 * K64)]


def test_the_last_block_is_clipped_to_the_disk_and_trailing_bits_are_ignored():
    size = 10 * K64 - 4096  # 10 blocks, the last one short
    # bits 8 and 9 are the last two blocks; bits 10..15 lie past the disk and are set too
    assert changed_ranges(b64(0, 0xFF), size) == [(8 * K64, 2 * K64 - 4096)]
    assert changed_bytes(b64(0, 0xFF), size) == 2 * K64 - 4096


def test_an_empty_bitmap_means_nothing_changed():
    assert changed_ranges(b64(0, 0, 0), 24 * K64) == []
    assert changed_bytes(b64(0, 0, 0), 24 * K64) == 0


def test_a_bitmap_too_short_for_the_disk_is_an_error():
    with pytest.raises(CbtError, match="covers 8 blocks, the disk has 9"):
        changed_ranges(b64(0xFF), 9 * K64)
    with pytest.raises(CbtError, match="not valid base64"):
        changed_ranges("@@@", K64)


def test_a_large_sparse_bitmap_is_decoded_exactly():
    size = 100 << 30  # 100 GiB: 1.6 M blocks, a 200 KiB bitmap
    bitmap = bytearray(size // K64 // 8)
    bitmap[1000] = 0b00010000  # block 8003
    bitmap[-1] = 0b00000001  # the very last block
    ranges = changed_ranges(base64.b64encode(bytes(bitmap)).decode(), size)
    assert ranges == [(8003 * K64, K64), (size - K64, K64)]
