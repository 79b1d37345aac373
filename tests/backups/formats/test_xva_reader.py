import gzip
import hashlib
import io
import subprocess

import pytest
import xxhash
import zstandard

from backups.formats.xva import XvaError, XvaStreamReader
from tests.backups.formats.conftest import MiB, need_tool
from tests.backups.formats.ova_sample import make_ova_xml
from tests.backups.formats.xva_helpers import (Trickle, hand_made_xva, pack_with_xva_img,
                                               reassemble)


def xxh(data: bytes) -> bytes:
    return b"%016X" % xxhash.xxh64_intdigest(data)


@pytest.fixture(scope="module")
def xva_img_export(tmp_path_factory, disk_24m):
    need_tool("xva-img")
    ova = make_ova_xml({"Ref:3": len(disk_24m)})
    path = pack_with_xva_img(tmp_path_factory.mktemp("xva"), {"Ref:3": disk_24m}, ova)
    return path.read_bytes()


def test_it_reassembles_a_disk_packed_by_xva_img(xva_img_export, disk_24m):
    reader = XvaStreamReader(io.BytesIO(xva_img_export))
    assert b"<name>objects</name>" in reader.ova_xml()
    assert reassemble(reader, {"Ref:3": len(disk_24m)}) == {"Ref:3": disk_24m}
    assert reader.compression == "none"
    assert reader.bytes_read == len(xva_img_export)


@pytest.mark.parametrize("tool,compression", [
    ("gzip", "auto"), ("gzip", "gzip"), ("zstd", "auto"), ("zstd", "zstd")])
def test_it_reads_exports_compressed_with_gzip_or_zstd(xva_img_export, disk_24m, tool,
                                                         compression, tmp_path):
    need_tool(tool)
    plain = tmp_path / "export.xva"
    plain.write_bytes(xva_img_export)
    subprocess.run([tool, "-q", "-k", str(plain)], check=True)
    packed = (tmp_path / ("export.xva.gz" if tool == "gzip" else "export.xva.zst")).read_bytes()
    reader = XvaStreamReader(Trickle(packed, 65536), compression=compression)
    assert reassemble(reader, {"Ref:3": len(disk_24m)}) == {"Ref:3": disk_24m}
    assert reader.compression == tool
    assert reader.bytes_read == len(packed) < len(xva_img_export)


def test_it_reads_concatenated_gzip_members_and_zstd_frames(disk_24m):
    ova = make_ova_xml({"Ref:1": 2 * MiB})
    data = disk_24m[: 2 * MiB]
    tar = hand_made_xva(ova, [("Ref:1/00000000", data[:MiB]),
                              ("Ref:1/00000000.xxhash", xxh(data[:MiB])),
                              ("Ref:1/00000001", data[MiB:]),
                              ("Ref:1/00000001.xxhash", xxh(data[MiB:]))])
    half = len(tar) // 2
    gz = gzip.compress(tar[:half]) + gzip.compress(tar[half:])
    zst = (zstandard.ZstdCompressor().compress(tar[:half])
           + zstandard.ZstdCompressor().compress(tar[half:]))
    for packed in (gz, zst):
        assert reassemble(XvaStreamReader(io.BytesIO(packed)), {"Ref:1": 2 * MiB}) \
            == {"Ref:1": data}


def test_it_copes_with_short_reads(xva_img_export, disk_24m):
    reader = XvaStreamReader(Trickle(xva_img_export, 1000))
    assert reassemble(reader, {"Ref:3": len(disk_24m)}) == {"Ref:3": disk_24m}


def test_a_flipped_byte_is_reported_with_the_member_name(xva_img_export):
    damaged = bytearray(xva_img_export)
    # data members follow ova.xml's header and padded body; xva-img left out the zero
    # chunks 1 and 2, so the second data member (after chunk 0 and its checksum) is chunk 3
    ova_size = int(damaged[124:135], 8)
    second_data = 512 + -(-ova_size // 512) * 512 + 512 + MiB + 1024 + 512
    damaged[second_data + 4321] ^= 0x01
    reader = XvaStreamReader(io.BytesIO(bytes(damaged)))
    with pytest.raises(XvaError, match=r"checksum mismatch in member 'Ref:3/00000003'"):
        for _ in reader.blocks():
            pass


def test_it_yields_damaged_data_when_told_not_to_verify(xva_img_export, disk_24m):
    damaged = bytearray(xva_img_export)
    ova_size = int(damaged[124:135], 8)
    first_data = 512 + -(-ova_size // 512) * 512 + 512
    damaged[first_data + 600] ^= 0x01
    reader = XvaStreamReader(io.BytesIO(bytes(damaged)), verify=False)
    disk = reassemble(reader, {"Ref:3": len(disk_24m)})["Ref:3"]
    assert disk[600] == disk_24m[600] ^ 0x01


def test_it_refuses_a_stream_whose_first_member_is_not_ova_xml():
    tar = hand_made_xva(b"<value/>", [])
    tar = tar.replace(b"ova.xml", b"foo.xml", 1)
    # fix the header checksum so only the name is wrong
    header = bytearray(tar[:512])
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    with pytest.raises(XvaError, match="first member is 'foo.xml'"):
        XvaStreamReader(io.BytesIO(bytes(header) + tar[512:])).ova_xml()


def test_it_places_data_after_an_empty_keepalive_block_by_the_running_offset():
    # xapi sent chunk 0, then (a long zero run later) an empty keepalive numbered 5, so the
    # chunk holding offset 7 MiB is numbered 8, not 7, and the last (offset 9 MiB) is 10.
    size = 10 * MiB
    chunk0, chunk7, last = b"A" * MiB, b"B" * MiB, b"C" * MiB
    members = []
    for number, data in ((0, chunk0), (5, b""), (8, chunk7), (10, last)):
        members += [(f"Ref:9/{number:08d}", data), (f"Ref:9/{number:08d}.xxhash", xxh(data))]
    tar = hand_made_xva(make_ova_xml({"Ref:9": size}), members)
    disk = reassemble(XvaStreamReader(io.BytesIO(tar)), {"Ref:9": size})["Ref:9"]
    expected = bytearray(size)
    expected[0:MiB], expected[7 * MiB : 8 * MiB], expected[9 * MiB :] = chunk0, chunk7, last
    assert disk == bytes(expected)


def test_it_accepts_sha1_checksum_members_and_names_a_missing_one():
    size = MiB
    data = b"x" * MiB
    good = hand_made_xva(make_ova_xml({"Ref:2": size}), [
        ("Ref:2/00000000", data), ("Ref:2/00000000.checksum",
                                   hashlib.sha1(data).hexdigest().encode())])
    assert reassemble(XvaStreamReader(io.BytesIO(good)), {"Ref:2": size}) == {"Ref:2": data}
    missing = hand_made_xva(make_ova_xml({"Ref:2": size}), [("Ref:2/00000000", data)])
    with pytest.raises(XvaError, match=r"'Ref:2/00000000' has no checksum"):
        list(XvaStreamReader(io.BytesIO(missing)).blocks())


def test_it_refuses_chunk_numbers_that_do_not_increase():
    size = 3 * MiB
    members = []
    for number in (0, 2, 1):
        data = bytes([65 + number]) * MiB
        members += [(f"Ref:2/{number:08d}", data), (f"Ref:2/{number:08d}.xxhash", xxh(data))]
    tar = hand_made_xva(make_ova_xml({"Ref:2": size}), members)
    with pytest.raises(XvaError, match=r"'Ref:2/00000001'.*must increase"):
        list(XvaStreamReader(io.BytesIO(tar)).blocks())


def test_it_detects_a_missing_last_chunk():
    size = 3 * MiB
    data = b"A" * MiB
    tar = hand_made_xva(make_ova_xml({"Ref:2": size}),
                        [("Ref:2/00000000", data), ("Ref:2/00000000.xxhash", xxh(data))])
    with pytest.raises(XvaError, match="Ref:2 ends at byte 1048576 but its virtual_size"):
        list(XvaStreamReader(io.BytesIO(tar)).blocks())


def test_it_detects_a_truncated_export(xva_img_export):
    cut = xva_img_export[: len(xva_img_export) // 2]
    with pytest.raises(XvaError, match="truncated"):
        list(XvaStreamReader(io.BytesIO(cut)).blocks())
    with pytest.raises(XvaError, match="truncated"):
        list(XvaStreamReader(io.BytesIO(gzip.compress(xva_img_export)[:-5000])).blocks())
    zst = zstandard.ZstdCompressor().compress(xva_img_export)
    with pytest.raises(XvaError, match="truncated"):
        list(XvaStreamReader(io.BytesIO(zst[:-5000])).blocks())


def test_it_refuses_a_stream_that_is_not_an_xva():
    with pytest.raises(XvaError, match="neither a tar"):
        XvaStreamReader(io.BytesIO(b"<html>502 Bad Gateway</html>" + bytes(600)))
