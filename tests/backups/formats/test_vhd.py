import io
import struct
import subprocess

import pytest

from backups.formats.vhd import VhdError, read_vhd_stream, write_vhd_stream
from tests.backups.formats.conftest import MiB, need_tool
from tests.backups.formats.xva_helpers import Trickle


def reassemble(stream) -> bytes:
    size, pieces = read_vhd_stream(stream)
    disk = bytearray(size)
    for offset, data in pieces:
        disk[offset : offset + len(data)] = data
    return bytes(disk)


@pytest.fixture(scope="module")
def qemu_vhd(tmp_path_factory, disk_odd):
    need_tool("qemu-img")
    directory = tmp_path_factory.mktemp("vhd")
    (directory / "disk.raw").write_bytes(disk_odd)
    # force_size keeps the exact byte size instead of rounding up to a CHS geometry
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o",
                    "subformat=dynamic,force_size=on", "disk.raw", "disk.vhd"],
                   cwd=directory, check=True)
    return (directory / "disk.vhd").read_bytes()


def test_it_reassembles_a_dynamic_vhd_made_by_qemu_img(qemu_vhd, disk_odd):
    assert reassemble(io.BytesIO(qemu_vhd)) == disk_odd
    assert reassemble(Trickle(qemu_vhd, 4000)) == disk_odd


def test_it_reads_blocks_stored_out_of_order_and_only_the_sectors_present():
    # Hand-built: blocks 2 then 0 on disk, block 2 with only sectors 1..2 marked present.
    block_size, size = 4096, 4 * 4096
    entries = size // block_size
    footer = bytearray(512)
    struct.pack_into(">8sIIQI4sI4sQQHBBI", footer, 0, b"conectix", 2, 0x10000, 512, 0,
                     b"test", 0x10000, b"Wi2k", size, size, 0, 0, 0, 4)
    struct.pack_into(">I", footer, 64, ~(sum(footer)) & 0xFFFFFFFF)
    header = bytearray(1024)
    struct.pack_into(">8sQQIII", header, 0, b"cxsparse", 2**64 - 1, 1536, 0x10000,
                     entries, block_size)
    struct.pack_into(">I", header, 36, ~(sum(header)) & 0xFFFFFFFF)
    first, second = 2048, 2048 + 512 + block_size
    bat = struct.pack(">4I", second // 512, 0xFFFFFFFF, first // 512, 0xFFFFFFFF)
    bat += b"\xff" * (512 - len(bat))
    block2 = bytes([0b01100000]) + bytes(511) + b"\x22" * block_size
    block0 = b"\xff" + bytes(511) + b"\x11" * block_size
    stream = bytes(footer) + bytes(header) + bat + block2 + block0 + bytes(footer)
    size_read, pieces = read_vhd_stream(io.BytesIO(stream))
    assert size_read == size
    assert list(pieces) == [(2 * block_size + 512, b"\x22" * 1024), (0, b"\x11" * block_size)]


def test_it_refuses_a_stream_that_is_not_a_vhd():
    with pytest.raises(VhdError, match="conectix"):
        read_vhd_stream(io.BytesIO(bytes(4096)))


def test_a_truncated_vhd_is_an_error(qemu_vhd):
    _, pieces = read_vhd_stream(io.BytesIO(qemu_vhd[: len(qemu_vhd) // 2]))
    with pytest.raises(VhdError, match="truncated"):
        list(pieces)


def written_vhd(disk: bytes, tmp_path):
    pieces = [(o, disk[o : o + MiB]) for o in range(0, len(disk), MiB)
              if disk[o : o + MiB].count(0) != len(disk[o : o + MiB])]
    path = tmp_path / "out.vhd"
    with open(path, "wb") as out:
        for data in write_vhd_stream(len(disk), iter(pieces),
                                     [(o, len(d)) for o, d in pieces]):
            out.write(data)
    return path


def test_qemu_img_reads_the_written_vhd_back_to_the_original(disk_odd, tmp_path):
    need_tool("qemu-img")
    path = written_vhd(disk_odd, tmp_path)
    info = subprocess.run(["qemu-img", "info", "-f", "vpc", "--output=json", str(path)],
                          check=True, capture_output=True, text=True).stdout
    assert f'"virtual-size": {len(disk_odd)}' in info
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(path),
                    str(tmp_path / "back.raw")], check=True)
    assert (tmp_path / "back.raw").read_bytes() == disk_odd
    # qemu-img 7.2 has no consistency check for vpc ("does not support checks"); compare
    # instead, which reads every block through qemu's own VHD driver
    subprocess.run(["qemu-img", "compare", "-f", "vpc", "-F", "raw", str(path),
                    str(tmp_path / "back.raw")], check=True, capture_output=True)


def test_the_written_vhd_allocates_only_blocks_with_data(tmp_path):
    need_tool("qemu-img")
    disk = bytearray(12 * MiB)
    disk[5 * MiB : 5 * MiB + 10] = b"0123456789"
    path = written_vhd(bytes(disk), tmp_path)
    mapping = subprocess.run(["qemu-img", "map", "-f", "vpc", "--output=json", str(path)],
                             check=True, capture_output=True, text=True).stdout
    assert ('"start": 4194304, "length": 2097152, "depth": 0, "present": true, "zero": false, '
            '"data": true') in mapping
    assert mapping.count('"data": true') == 1
    assert reassemble(open(path, "rb")) == bytes(disk)


def test_the_vhd_writer_refuses_data_outside_the_declared_ranges():
    with pytest.raises(ValueError, match="outside the declared data_ranges"):
        list(write_vhd_stream(8 * MiB, iter([(6 * MiB, b"x" * 512)]), [(0, MiB)]))
