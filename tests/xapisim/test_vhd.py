import io
import json
import os
import random
import shutil
import struct
import subprocess

import pytest

from xapisim.content import ContentProfile
from xapisim.disks import BLOCK_SIZE as CBT_BLOCK
from xapisim.disks import DiskStore
from xapisim.vhd import BLOCK_SIZE, VhdFormatError, read_vhd, write_vhd

MiB = 1024 * 1024


def need_qemu_img():
    if shutil.which("qemu-img") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("qemu-img is required in CI")
        pytest.skip("qemu-img is not installed")


@pytest.fixture
def store(tmp_path):
    store = DiskStore(tmp_path / "store")
    yield store
    store.close()


class OneWay(io.RawIOBase):
    """A pipe-like stream: reads only, no seeking (what an HTTP body looks like)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        chunk = self._data.read(min(len(buffer), 70_000))   # odd sizes on purpose
        buffer[:len(chunk)] = chunk
        return len(chunk)


def vhd_of(store, disk_id, **kwargs) -> bytes:
    with store.open_reader(disk_id) as reader:
        return b"".join(write_vhd(reader, **kwargs))


def apply(vhd_stream, target: bytearray) -> list[tuple[int, int]]:
    ranges = []
    for offset, data in read_vhd(vhd_stream):
        target[offset:offset + len(data)] = data
        ranges.append((offset, len(data)))
    return ranges


def changed_ranges(bitmap: bytes, size: int) -> list[tuple[int, int]]:
    ranges = []
    for i in range(len(bitmap) * 8):
        if bitmap[i >> 3] & (0x80 >> (i & 7)):
            start = i * CBT_BLOCK
            ranges.append((start, min(CBT_BLOCK, size - start)))
    return ranges


def merged(ranges):
    result = []
    for offset, length in sorted(ranges):
        if result and result[-1][0] + result[-1][1] == offset:
            result[-1] = (result[-1][0], result[-1][1] + length)
        else:
            result.append((offset, length))
    return result


def qemu_map(path) -> list[dict]:
    result = subprocess.run(["qemu-img", "map", "-f", "vpc", "--output=json", str(path)],
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def qemu_check_vpc(path):
    """qemu-img 7.2 has no consistency check for vpc; then `info` must at least open it."""
    check = subprocess.run(["qemu-img", "check", "-f", "vpc", str(path)],
                           capture_output=True, text=True)
    if check.returncode == 63 and "does not support checks" in check.stderr:
        info = subprocess.run(["qemu-img", "info", "-f", "vpc", "--output=json", str(path)],
                              check=True, capture_output=True, text=True)
        return json.loads(info.stdout)
    assert check.returncode == 0, check.stdout + check.stderr
    return None


def test_a_full_vhd_converts_back_to_the_raw_disk(store, tmp_path):
    need_qemu_img()
    size = 21 * MiB + 3 * 512   # a partial last VHD block
    store.create("a", size)
    store.fill("a", 1, ContentProfile())
    store.write("a", size - 700, b"end of disk" * 10)
    path = tmp_path / "a.vhd"
    path.write_bytes(vhd_of(store, "a", uuid=bytes(range(16)), timestamp=1_700_000_000))

    info = qemu_check_vpc(path)
    if info is not None:
        assert info["virtual-size"] == size
        assert info["format"] == "vpc"
    raw = tmp_path / "a.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(path), str(raw)],
                   check=True)
    assert raw.read_bytes() == store.read("a", 0, size)


def test_a_full_vhd_leaves_out_unallocated_blocks(store, tmp_path):
    need_qemu_img()
    store.create("a", 16 * MiB)
    store.write("a", 5 * MiB, b"x" * 100)
    data = vhd_of(store, "a")
    # footer copy + header + BAT (8 entries -> one sector) + one block + footer
    assert len(data) == 512 + 1024 + 512 + (512 + BLOCK_SIZE) + 512
    path = tmp_path / "a.vhd"
    path.write_bytes(data)
    extents = [e for e in qemu_map(path) if e["data"]]
    assert [(e["start"], e["length"]) for e in extents] == [(4 * MiB, BLOCK_SIZE)]


def test_the_footer_and_header_follow_the_vhd_specification(store):
    store.create("a", 64 * MiB)
    data = vhd_of(store, "a", uuid=b"U" * 16, timestamp=946684800 + 1000)
    footer, header = data[:512], data[512:1536]
    assert data[-512:] == footer
    assert footer[:8] == b"conectix"
    assert struct.unpack(">I", footer[8:12])[0] == 2
    assert struct.unpack(">Q", footer[16:24])[0] == 512       # dynamic header offset
    assert struct.unpack(">I", footer[24:28])[0] == 1000      # seconds since 2000
    assert struct.unpack(">QQ", footer[40:56]) == (64 * MiB, 64 * MiB)
    assert struct.unpack(">HBB", footer[56:60]) == (963, 8, 17)   # CHS of 64 MiB
    assert struct.unpack(">I", footer[60:64])[0] == 3         # dynamic
    assert footer[68:84] == b"U" * 16
    checksum = struct.unpack(">I", footer[64:68])[0]
    assert checksum == ~sum(footer[:64] + bytes(4) + footer[68:]) & 0xFFFFFFFF
    assert header[:8] == b"cxsparse"
    assert struct.unpack(">QII", header[16:24] + header[28:36]) == (1536, 32, BLOCK_SIZE)
    assert data[1536:1536 + 128] == b"\xff" * 128             # empty disk: every block absent


def test_a_delta_vhd_is_a_differencing_disk_of_whole_2_mib_blocks(store, tmp_path):
    """vhd-tool's stream with --relative-to (ocaml-vhd Vhd_input.vhd ~from, as
    export_raw_vdi.ml runs it for base=): disk type Differencing, the header naming the base as
    parent, and every 2 MiB block that holds a change sent whole with all sector bits set."""
    need_qemu_img()
    size = 24 * MiB
    store.create("vm", size)
    store.fill("vm", 2, ContentProfile(zero=0.2, text=0.4, random=0.4))
    store.snapshot("vm", "base")
    store.guest_write("vm", 6, random.Random(3))
    store.write("vm", 10 * MiB + 100, b"a small write")
    store.write("vm", 12 * MiB - 10, b"spans two CBT blocks")
    store.snapshot("vm", "new")
    bitmap = store.changed_blocks("base", "new")
    changed = changed_ranges(bitmap, size)
    assert 3 < len(changed) <= 9
    parent = bytes(range(16))

    delta = vhd_of(store, "new", changed=changed, parent_uuid=parent, parent_name="base.vhd")
    assert struct.unpack(">I", delta[60:64]) == (4,)                      # differencing
    assert delta[512 + 40:512 + 56] == parent
    assert delta[512 + 64:512 + 80].decode("utf-16-be") == "base.vhd"
    restored = bytearray(store.read("base", 0, size))
    applied = apply(OneWay(delta), restored)
    assert restored == store.read("new", 0, size)
    changed_vhd_blocks = sorted({offset // BLOCK_SIZE for offset, _ in changed}
                                | {(offset + length - 1) // BLOCK_SIZE for offset, length in changed})
    assert merged(applied) == merged([(b * BLOCK_SIZE, BLOCK_SIZE) for b in changed_vhd_blocks])

    path = tmp_path / "delta.vhd"
    path.write_bytes(delta)
    data_extents = [e for e in qemu_map(path) if e["data"]]
    covered = set()
    for extent in data_extents:
        first = extent["start"] // BLOCK_SIZE
        covered.update(range(first, first + extent["length"] // BLOCK_SIZE))
    assert covered == set(changed_vhd_blocks)
    # Whole blocks: the unchanged sectors of a changed block carry the disk's current content.
    raw = tmp_path / "delta.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(path), str(raw)],
                   check=True)
    expected = bytearray(size)
    for block in changed_vhd_blocks:
        expected[block * BLOCK_SIZE:(block + 1) * BLOCK_SIZE] = store.read("new", block * BLOCK_SIZE, BLOCK_SIZE)
    assert raw.read_bytes() == expected


def test_an_empty_delta_is_a_valid_vhd_without_blocks(store):
    store.create("vm", 8 * MiB)
    store.snapshot("vm", "base")
    delta = vhd_of(store, "vm", changed=changed_ranges(store.changed_blocks("base", "vm"),
                                                       8 * MiB))
    assert list(read_vhd(io.BytesIO(delta))) == []


def test_read_vhd_reads_what_qemu_img_writes(tmp_path):
    need_qemu_img()
    rng = random.Random(4)
    size = 10 * MiB
    raw = bytearray(size)
    raw[MiB:MiB + 300_000] = rng.randbytes(300_000)
    raw[7 * MiB:9 * MiB] = rng.randbytes(2 * MiB)
    (tmp_path / "in.raw").write_bytes(raw)
    path = tmp_path / "q.vhd"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic",
                    str(tmp_path / "in.raw"), str(path)], check=True)
    data = path.read_bytes()
    for stream in (io.BytesIO(data), OneWay(data)):
        target = bytearray(size)
        apply(stream, target)
        assert target == raw


def test_a_seekable_file_may_list_blocks_in_any_order(store, tmp_path):
    store.create("a", 8 * MiB)
    store.write("a", 0, b"first block")
    store.write("a", 6 * MiB, b"last block")
    data = bytearray(vhd_of(store, "a"))
    # Swap the two blocks in the file and their BAT entries.
    bat_at, first_at = 1536, 2048
    block = 512 + BLOCK_SIZE
    one, two = data[first_at:first_at + block], data[first_at + block:first_at + 2 * block]
    data[first_at:first_at + 2 * block] = two + one
    entries = struct.unpack(">4I", data[bat_at:bat_at + 16])
    swapped = (entries[3], entries[1], entries[2], entries[0])
    data[bat_at:bat_at + 16] = struct.pack(">4I", *swapped)
    # Seekable: any layout. A pipe still reads it, since both blocks follow the BAT.
    for stream in (io.BytesIO(bytes(data)), OneWay(bytes(data))):
        target = bytearray(8 * MiB)
        apply(stream, target)
        assert target == store.read("a", 0, 8 * MiB)


def test_a_pipe_cannot_go_back_for_a_block_before_the_bat(store):
    store.create("a", 4 * MiB)
    store.write("a", 0, b"x")
    data = bytearray(vhd_of(store, "a"))
    struct.pack_into(">Q", data, 512 + 16, 5000 * 512)   # move the BAT past the block
    header = data[512:1536]
    struct.pack_into(">I", header, 36, 0)
    struct.pack_into(">I", header, 36, ~sum(header) & 0xFFFFFFFF)
    data[512:1536] = header
    data += bytes(5000 * 512 - len(data)) + data[1536:2048]
    with pytest.raises(VhdFormatError, match="non-seekable"):
        list(read_vhd(OneWay(bytes(data))))
    target = bytearray(4 * MiB)
    apply(io.BytesIO(bytes(data)), target)
    assert target[:1] == b"x"


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.__setitem__(slice(0, 8), b"notavhd!"), "conectix"),
    (lambda d: d.__setitem__(70, d[70] ^ 1), "footer checksum"),
    (lambda d: d.__setitem__(600, d[600] ^ 1), "header checksum"),
])
def test_damaged_vhd_headers_are_refused(store, damage, message):
    store.create("a", 4 * MiB)
    data = bytearray(vhd_of(store, "a"))
    damage(data)
    with pytest.raises(VhdFormatError, match=message):
        list(read_vhd(io.BytesIO(bytes(data))))


def test_a_truncated_vhd_is_an_error(store):
    store.create("a", 4 * MiB)
    store.write("a", 0, b"x")
    data = vhd_of(store, "a")
    with pytest.raises(VhdFormatError, match="stream ended inside block 0"):
        list(read_vhd(OneWay(data[:4096])))


def test_a_disk_size_not_a_multiple_of_512_is_padded_to_a_sector(store):
    size = 3 * MiB + 1000
    store.create("a", size)
    store.write("a", size - 10, b"0123456789")
    data = vhd_of(store, "a")
    assert struct.unpack(">Q", data[48:56])[0] == 3 * MiB + 1024
    target = bytearray(3 * MiB + 1024)
    apply(io.BytesIO(data), target)
    assert target == store.read("a", 0, size) + bytes(24)
