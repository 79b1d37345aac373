import os
import random
import subprocess
import sys
import textwrap
import threading

import pytest

from xapisim.content import REGION_SIZE, ContentProfile, generate_region, region_kind
from xapisim.disks import BLOCK_SIZE, DiskError, DiskFullError, DiskStore

MiB = 1024 * 1024


def disk_space(root) -> int:
    """Bytes the store's files really occupy on disk (sparse holes excluded)."""
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            total += os.stat(os.path.join(directory, name)).st_blocks * 512
    return total


def segment_space(root) -> int:
    return disk_space(os.path.join(root, "segments"))


def set_bits(bitmap: bytes) -> list[int]:
    return [i for i in range(len(bitmap) * 8) if bitmap[i >> 3] & (0x80 >> (i & 7))]


@pytest.fixture
def store(tmp_path):
    store = DiskStore(tmp_path / "disks")
    yield store
    store.close()


def test_a_new_disk_reads_as_zeros_and_takes_no_space(store, tmp_path):
    store.create("a", 64 * MiB)
    assert store.virtual_size("a") == 64 * MiB
    assert store.read("a", 5 * MiB + 3, 1000) == bytes(1000)
    assert store.physical_utilisation("a") == 0
    assert segment_space(tmp_path / "disks") == 0
    with store.open_reader("a") as reader:
        assert reader.allocated_extents() == []


def test_writes_and_reads_at_any_alignment_round_trip(store):
    size = 3 * BLOCK_SIZE + 4096
    store.create("a", size)
    expected = bytearray(size)
    rng = random.Random(7)
    for _ in range(40):
        offset = rng.randrange(size)
        data = rng.randbytes(rng.randrange(1, min(3 * BLOCK_SIZE, size - offset) + 1))
        store.write("a", offset, data)
        expected[offset:offset + len(data)] = data
    assert store.read("a", 0, size) == expected
    assert store.read("a", 12345, 99999) == expected[12345:12345 + 99999]
    assert store.read("a", size - 1, 1) == expected[-1:]


def test_io_outside_the_disk_is_refused(store):
    store.create("a", MiB)
    with pytest.raises(DiskError, match="outside disk a"):
        store.write("a", MiB - 10, bytes(11))
    with pytest.raises(DiskError, match="outside disk a"):
        store.read("a", MiB, 1)
    with pytest.raises(DiskError, match="unknown disk"):
        store.read("nope", 0, 1)


def test_allocated_extents_are_merged_and_block_aligned(store):
    store.create("a", 10 * BLOCK_SIZE + 512)
    store.write("a", BLOCK_SIZE + 100, b"x")
    store.write("a", 2 * BLOCK_SIZE, b"y")
    store.write("a", 10 * BLOCK_SIZE, b"z" * 512)
    with store.open_reader("a") as reader:
        assert reader.allocated_extents() == [(BLOCK_SIZE, 2 * BLOCK_SIZE),
                                              (10 * BLOCK_SIZE, 512)]


def test_a_snapshot_takes_no_space_until_the_parent_changes(store, tmp_path):
    root = tmp_path / "disks"
    store.create("vm", 16 * MiB)
    store.write("vm", 0, random.Random(1).randbytes(4 * MiB))
    before = segment_space(root)
    assert before >= 4 * MiB
    store.snapshot("vm", "snap")
    assert segment_space(root) == before
    assert store.read("snap", 0, 4 * MiB) == store.read("vm", 0, 4 * MiB)
    assert store.physical_utilisation("snap") == 0
    assert store.physical_utilisation("vm") == 4 * MiB

    old = store.read("vm", 0, BLOCK_SIZE)
    store.write("vm", 10, b"changed")
    assert segment_space(root) == before + BLOCK_SIZE
    assert store.read("snap", 0, BLOCK_SIZE) == old
    assert store.read("vm", 10, 7) == b"changed"
    assert store.read("vm", 17, BLOCK_SIZE - 17) == old[17:]


def test_changed_blocks_are_exact_after_guest_writes(store):
    store.create("vm", 20 * BLOCK_SIZE + 4096)   # 21 blocks -> 3 bytes of bitmap
    store.fill("vm", 3, ContentProfile(zero=0, text=1, random=0))
    store.snapshot("vm", "base")
    assert store.changed_blocks("base", "vm") == bytes(3)

    written = store.guest_write("vm", 5, random.Random(42))
    assert len(set(written)) == 5
    bitmap = store.changed_blocks("base", "vm")
    assert len(bitmap) == 3
    assert set_bits(bitmap) == sorted(written)

    # MSB first: block 0 is bit 0x80 of byte 0, block 20 is 0x08 of byte 2.
    store.snapshot("vm", "base2")
    store.write("vm", 0, b"a")
    store.write("vm", 20 * BLOCK_SIZE + 4095, b"b")
    assert store.changed_blocks("base2", "vm") == bytes([0x80, 0, 0x08])


def test_rewriting_the_same_bytes_still_counts_as_a_change(store):
    store.create("vm", 4 * BLOCK_SIZE)
    store.write("vm", BLOCK_SIZE, b"same")
    store.snapshot("vm", "base")
    store.write("vm", BLOCK_SIZE, b"same")
    assert store.changed_blocks("base", "vm") == bytes([0x40])


def test_changed_blocks_refuses_unrelated_disks(store):
    store.create("a", MiB)
    store.create("b", MiB)
    with pytest.raises(DiskError, match="unrelated"):
        store.changed_blocks("a", "b")
    with pytest.raises(DiskError, match="itself"):
        store.changed_blocks("a", "a")


def test_data_destroy_keeps_changed_blocks_working(store, tmp_path):
    store.create("vm", 32 * BLOCK_SIZE)
    store.fill("vm", 5, ContentProfile(zero=0, text=0, random=1))
    store.snapshot("vm", "snap1")
    first = store.guest_write("vm", 3, random.Random(1))
    store.snapshot("vm", "snap2")
    store.data_destroy("snap1")

    assert not store.has_data("snap1")
    assert store.has_data("snap2")
    with pytest.raises(DiskError, match="no data"):
        store.read("snap1", 0, 1)
    assert set_bits(store.changed_blocks("snap1", "snap2")) == first
    second = store.guest_write("vm", 2, random.Random(2))
    assert set_bits(store.changed_blocks("snap1", "vm")) == sorted(set(first) | set(second))


def test_destroy_frees_space_no_other_disk_uses(store, tmp_path):
    root = tmp_path / "disks"
    store.create("vm", 16 * MiB)
    store.write("vm", 0, random.Random(1).randbytes(8 * MiB))
    store.snapshot("vm", "snap")
    store.write("vm", 0, random.Random(2).randbytes(2 * MiB))   # 2 MiB copied on write
    assert segment_space(root) == 10 * MiB

    store.destroy("snap")   # the 2 MiB only the snapshot still saw are freed
    assert not store.exists("snap")
    assert segment_space(root) == 8 * MiB
    assert store.physical_utilisation("vm") == 8 * MiB

    store.destroy("vm")
    assert segment_space(root) == 0
    assert os.listdir(root / "segments") == []


def test_a_snapshot_keeps_its_data_when_the_parent_is_destroyed(store, tmp_path):
    store.create("vm", 4 * MiB)
    data = random.Random(3).randbytes(4 * MiB)
    store.write("vm", 0, data)
    store.snapshot("vm", "snap")
    store.destroy("vm")
    assert store.read("snap", 0, 4 * MiB) == data
    assert store.physical_utilisation("snap") == 4 * MiB


def test_state_survives_reopening_the_store(tmp_path):
    root = tmp_path / "disks"
    store = DiskStore(root)
    store.create("vm", 8 * MiB)
    store.fill("vm", 9, ContentProfile())
    store.snapshot("vm", "base")
    written = store.guest_write("vm", 4, random.Random(5))
    store.write("vm", 12345, b"tail of the journal")
    content = store.read("vm", 0, 8 * MiB)
    base_content = store.read("base", 0, 8 * MiB)
    bitmap = store.changed_blocks("base", "vm")
    usage = store.physical_utilisation("vm")
    # No close(): a killed simulator must come back from the journal too.

    reopened = DiskStore(root)
    assert reopened.read("vm", 0, 8 * MiB) == content
    assert reopened.read("base", 0, 8 * MiB) == base_content
    assert reopened.changed_blocks("base", "vm") == bitmap
    assert set(written) <= set(set_bits(bitmap))
    assert reopened.physical_utilisation("vm") == usage
    reopened.write("vm", 0, b"new")
    assert set_bits(reopened.changed_blocks("base", "vm"))[0] == 0
    reopened.close()


def test_resize_grows_with_zeros_and_shrinks_away_data(store):
    store.create("a", MiB)
    store.write("a", 0, b"\xaa" * MiB)
    store.resize("a", 3 * MiB)
    assert store.virtual_size("a") == 3 * MiB
    assert store.read("a", MiB - 2, 4) == b"\xaa\xaa\x00\x00"
    store.resize("a", 100 * 1024)   # cuts block 1 in the middle
    store.resize("a", MiB)
    assert store.read("a", 0, 100 * 1024) == b"\xaa" * (100 * 1024)
    assert store.read("a", 100 * 1024, MiB - 100 * 1024) == bytes(MiB - 100 * 1024)


def test_fill_writes_the_regions_content_generates(store):
    profile = ContentProfile()
    store.create("a", 12 * MiB)
    store.fill("a", 11, profile)
    kinds = [region_kind(11, i, profile) for i in range(12)]
    assert set(kinds) == {"zero", "text", "random"}
    for index, kind in enumerate(kinds):
        assert store.read("a", index * REGION_SIZE, REGION_SIZE) == \
            generate_region(11, index, kind)
    with store.open_reader("a") as reader:
        allocated = sum(length for _, length in reader.allocated_extents())
    assert allocated == sum(kind != "zero" for kind in kinds) * MiB


def test_a_reader_keeps_working_after_its_disk_is_destroyed(store):
    store.create("a", MiB)
    store.write("a", 0, b"kept")
    reader = store.open_reader("a")
    store.destroy("a")
    assert reader.read(0, 4) == b"kept"
    reader.close()


def test_the_capacity_callback_can_refuse_new_space(tmp_path):
    granted = []

    def capacity(disk_id, new_bytes):
        granted.append(new_bytes)
        return sum(granted) <= 2 * BLOCK_SIZE

    store = DiskStore(tmp_path / "d", capacity=capacity)
    store.create("a", MiB)
    store.write("a", 0, bytes(2 * BLOCK_SIZE))
    with pytest.raises(DiskFullError):
        store.write("a", 2 * BLOCK_SIZE, b"x")
    store.close()


@pytest.mark.slow
def test_a_4_gib_disk_is_filled_and_read_in_bounded_memory(tmp_path):
    # In a child process so the peak RSS measured is this work only.
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from xapisim.content import ContentProfile
        from xapisim.disks import DiskStore
        store = DiskStore({str(tmp_path / "big")!r})
        store.create("big", 4 << 30)
        store.fill("big", 1, ContentProfile(zero=0.9, text=0.05, random=0.05))
        store.snapshot("big", "snap")
        reader = store.open_reader("snap")
        for offset in range(0, 4 << 30, 64 << 20):
            assert len(reader.read(offset, 1 << 20)) == 1 << 20
        # VmHWM, unlike ru_maxrss, starts afresh at exec (not inherited from pytest).
        print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    peak_kib = int(result.stdout.split()[-1])
    assert peak_kib < 200 * 1024, f"peak RSS {peak_kib} KiB for a 4 GiB disk"


def test_snapshot_readers_see_stable_data_while_the_parent_is_written(store):
    store.create("vm", 8 * MiB)
    store.fill("vm", 4, ContentProfile(zero=0, text=0.5, random=0.5))
    store.snapshot("vm", "snap")
    expected = store.read("snap", 0, 8 * MiB)
    failures = []

    def read_snapshot():
        with store.open_reader("snap") as reader:
            for _ in range(20):
                if reader.read(0, 8 * MiB) != expected:
                    failures.append("snapshot content changed")

    readers = [threading.Thread(target=read_snapshot) for _ in range(2)]
    for thread in readers:
        thread.start()
    rng = random.Random(6)
    for _ in range(200):
        store.write("vm", rng.randrange(8 * MiB - 5000), rng.randbytes(5000))
    for thread in readers:
        thread.join()
    assert failures == []
    assert store.read("snap", 0, 8 * MiB) == expected
