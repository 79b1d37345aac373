import gzip
import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile

import pytest
import xxhash
import zstandard

from xapisim.disks import DiskStore
from xapisim.xva import CHUNK, XvaFormatError, open_decompressed, read_xva, tar_header, write_xva

MiB = 1024 * 1024
OVA = b"<value><struct><member><name>version</name></member></struct></value>\n"


def need_tool(name):
    if shutil.which(name) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI")
        pytest.skip(f"{name} is not installed")


@pytest.fixture
def store(tmp_path):
    store = DiskStore(tmp_path / "store")
    yield store
    store.close()


def sparse_disk(store, disk_id, size, seed):
    """Data in chunk 2 and in the short last chunk; chunk 3 written but all zeros."""
    rng = random.Random(seed)
    store.create(disk_id, size)
    store.write(disk_id, 2 * MiB + 4096, rng.randbytes(300_000))
    store.write(disk_id, 3 * MiB, bytes(MiB))
    store.write(disk_id, size - 1024, rng.randbytes(1024))
    return store.read(disk_id, 0, size)


def xva_bytes(disks, checksum="xxhash", export_time=1_700_000_000):
    return b"".join(write_xva(OVA, disks, checksum=checksum, export_time=export_time))


def member_names(xva: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(xva)) as tar:
        return tar.getnames()


def reassemble(items, sizes):
    disks = {ref: bytearray(size) for ref, size in sizes.items()}
    ova = None
    for item in items:
        if item.kind == "ova.xml":
            ova = item.data
        else:
            disks[item.ref][item.offset:item.offset + len(item.data)] = item.data
    return ova, {ref: bytes(data) for ref, data in disks.items()}


def test_read_xva_round_trips_a_sparse_disk_byte_exact(store):
    size = 6 * MiB + 3 * 512   # a short last chunk
    expected = sparse_disk(store, "a", size, 1)
    with store.open_reader("a") as reader:
        xva = xva_bytes([("Ref:7", reader)])

    assert member_names(xva) == [
        "ova.xml",
        "Ref:7/00000000", "Ref:7/00000000.xxhash",   # always sent, though all zeros
        "Ref:7/00000002", "Ref:7/00000002.xxhash",   # chunks 1, 3, 4, 5 are zeros
        "Ref:7/00000006", "Ref:7/00000006.xxhash",   # the last chunk, 1536 bytes
    ]
    items = list(read_xva(io.BytesIO(xva)))
    assert [(i.ref, i.offset, len(i.data)) for i in items[1:]] == [
        ("Ref:7", 0, MiB), ("Ref:7", 2 * MiB, MiB), ("Ref:7", 6 * MiB, 1536)]
    ova, disks = reassemble(items, {"Ref:7": size})
    assert ova == OVA
    assert disks["Ref:7"] == expected


def test_vdis_are_written_in_lexicographic_order_of_their_ref(store):
    for disk_id in ("a", "b", "c"):
        store.create(disk_id, MiB)
        store.write(disk_id, 0, disk_id.encode() * 100)
    readers = {d: store.open_reader(d) for d in "abc"}
    xva = xva_bytes([("Ref:2", readers["a"]), ("Ref:10", readers["b"]),
                     ("Ref:9", readers["c"])])
    data_members = [n for n in member_names(xva) if not n.endswith(".xxhash")]
    assert data_members == ["ova.xml", "Ref:10/00000000", "Ref:2/00000000", "Ref:9/00000000"]
    _, disks = reassemble(read_xva(io.BytesIO(xva)),
                          {"Ref:2": MiB, "Ref:10": MiB, "Ref:9": MiB})
    assert disks["Ref:10"].startswith(b"b" * 100)
    for reader in readers.values():
        reader.close()


def test_every_xxhash_member_is_uppercase_xxh64_of_its_chunk(store):
    sparse_disk(store, "a", 5 * MiB, 2)
    with store.open_reader("a") as reader:
        xva = xva_bytes([("Ref:3", reader)], checksum="xxhash")
    with tarfile.open(fileobj=io.BytesIO(xva)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    checked = 0
    for name, data in members.items():
        if name.endswith(".xxhash"):
            chunk = members[name[:-len(".xxhash")]]
            assert data == ("%016X" % xxhash.xxh64_intdigest(chunk)).encode()
            checked += 1
    assert checked == 3


def test_sha1_checksums_are_lowercase_hex(store):
    sparse_disk(store, "a", 4 * MiB, 3)
    with store.open_reader("a") as reader:
        xva = xva_bytes([("Ref:3", reader)], checksum="sha1")
    with tarfile.open(fileobj=io.BytesIO(xva)) as tar:
        chunk = tar.extractfile("Ref:3/00000002").read()
        stored = tar.extractfile("Ref:3/00000002.checksum").read()
    assert stored == hashlib.sha1(chunk).hexdigest().encode()


def test_tar_headers_follow_the_v7_rules_xapi_uses(store):
    store.create("a", MiB)
    store.write("a", 0, b"x")
    with store.open_reader("a") as reader:
        xva = xva_bytes([("Ref:1", reader)], export_time=1_700_000_123)

    headers = [xva[0:512], xva[512 + 512 * (len(OVA) // 512 + 1):][:512]]
    assert headers[1][:15] == b"Ref:1/00000000\0"
    for header, size, mtime in ((headers[0], len(OVA), 1_700_000_123),
                                (headers[1], MiB, 0)):
        assert header[100:108] == b"0000400\0"           # mode
        assert header[108:116] == b"0000000\0"           # uid
        assert header[116:124] == b"0000000\0"           # gid
        assert header[124:136] == b"%011o\0" % size
        assert header[136:148] == b"%011o\0" % mtime
        assert header[156:157] == b"\0"                  # typeflag
        assert header[157:] == bytes(512 - 157)          # no link name, no ustar magic
        unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
        assert header[148:156] == b"%07o\0" % unsigned   # not GNU's "%06o\0 "
    # Two zero blocks end the archive, with no padding to a 10 KiB record.
    assert xva.endswith(bytes(1024))
    assert len(xva) == 512 + 512 + 512 + MiB + 512 + 512 + 1024
    assert xva[-1536:-1024] != bytes(512)


def test_the_writer_yields_whole_chunks_not_tiny_pieces(store):
    store.create("a", 8 * MiB)
    store.write("a", 0, random.Random(1).randbytes(8 * MiB))
    with store.open_reader("a") as reader:
        pieces = list(write_xva(OVA, [("Ref:1", reader)], checksum="xxhash", export_time=0))
    assert len(pieces) == 1 + 8 + 1
    assert all(MiB < len(p) <= MiB + 2048 for p in pieces[1:-1])


def test_xva_img_exports_identical_raw_disks_from_a_sha1_xva(store, tmp_path):
    need_tool("xva-img")
    size = 6 * MiB + 3 * 512
    expected = sparse_disk(store, "a", size, 4)
    with store.open_reader("a") as reader:
        xva = xva_bytes([("Ref:4", reader)], checksum="sha1")
    unpacked = tmp_path / "unpacked"
    with tarfile.open(fileobj=io.BytesIO(xva)) as tar:
        tar.extractall(unpacked, filter="data")
    raw = tmp_path / "disk.raw"
    subprocess.run(["xva-img", "disk-export", str(unpacked / "Ref:4"), str(raw)],
                   check=True, capture_output=True)
    assert raw.read_bytes() == expected


def test_read_xva_reads_what_xva_img_packages(tmp_path):
    need_tool("xva-img")
    rng = random.Random(5)
    # xva-img drops a short last chunk, so the disk is whole MiBs with data at the end.
    expected = rng.randbytes(MiB) + bytes(2 * MiB) + rng.randbytes(MiB)
    (tmp_path / "disk.raw").write_bytes(expected)
    (tmp_path / "ova.xml").write_bytes(OVA)
    (tmp_path / "Ref:12").mkdir()
    subprocess.run(["xva-img", "disk-import", "Ref:12", "disk.raw"], cwd=tmp_path,
                   check=True, capture_output=True)
    subprocess.run(["xva-img", "package", "vm.xva", "./ova.xml", "./Ref:12"], cwd=tmp_path,
                   check=True, capture_output=True)
    with open(tmp_path / "vm.xva", "rb") as f:
        ova, disks = reassemble(read_xva(f), {"Ref:12": len(expected)})
    assert ova == OVA
    assert disks["Ref:12"] == expected


@pytest.mark.parametrize("compress", [
    lambda data: data,
    lambda data: gzip.compress(data, compresslevel=1),
    lambda data: zstandard.ZstdCompressor(level=1).compress(data),
], ids=["plain", "gzip", "zstd"])
def test_compression_is_detected_like_xapi_import(store, compress):
    size = 5 * MiB
    expected = sparse_disk(store, "a", size, 6)
    with store.open_reader("a") as reader:
        xva = xva_bytes([("Ref:1", reader)])
    stream = open_decompressed(io.BytesIO(compress(xva)))
    ova, disks = reassemble(read_xva(stream), {"Ref:1": size})
    assert ova == OVA
    assert disks["Ref:1"] == expected


def test_a_zstd_stream_of_several_frames_is_read_whole(store):
    store.create("a", 2 * MiB)
    store.write("a", 0, random.Random(8).randbytes(2 * MiB))
    with store.open_reader("a") as reader:
        pieces = list(write_xva(OVA, [("Ref:1", reader)], checksum="xxhash", export_time=0))
    compressor = zstandard.ZstdCompressor(level=1)
    framed = b"".join(compressor.compress(p) for p in pieces)   # one frame per piece
    _, disks = reassemble(read_xva(open_decompressed(io.BytesIO(framed))), {"Ref:1": 2 * MiB})
    assert disks["Ref:1"] == store.read("a", 0, 2 * MiB)


def test_a_flipped_data_byte_fails_naming_the_member(store):
    sparse_disk(store, "a", 4 * MiB, 7)
    with store.open_reader("a") as reader:
        xva = bytearray(xva_bytes([("Ref:1", reader)]))
    position = xva.index(b"Ref:1/00000002\0") + 512 + 5000
    xva[position] ^= 0x01
    with pytest.raises(XvaFormatError, match=r"Ref:1/00000002\.xxhash"):
        list(read_xva(io.BytesIO(bytes(xva))))
    # verify=False is xapi's force=true: the data goes through as it is.
    blocks = [i for i in read_xva(io.BytesIO(bytes(xva)), verify=False) if i.kind == "block"]
    assert len(blocks) == 3


def test_a_corrupt_tar_header_is_refused(store):
    store.create("a", MiB)
    with store.open_reader("a") as reader:
        xva = bytearray(xva_bytes([("Ref:1", reader)]))
    position = xva.index(b"Ref:1/00000000\0")
    xva[position + 4] = ord("9")
    with pytest.raises(XvaFormatError, match="bad tar header checksum.*Ref:9/00000000"):
        list(read_xva(io.BytesIO(bytes(xva))))


def member(name, data):
    return tar_header(name, len(data)) + data + bytes(-len(data) % 512)


def test_ova_xml_must_come_first():
    stream = member("Ref:1/00000000", bytes(512)) + member("ova.xml", OVA) + bytes(1024)
    with pytest.raises(XvaFormatError, match="first member must be ova.xml"):
        list(read_xva(io.BytesIO(stream)))


def test_chunks_are_placed_with_xapis_running_offset_rule():
    # An empty keep-alive chunk shifts later numbers by one, as xapi's exporter does.
    first, later = b"a" * MiB, b"b" * MiB
    stream = (member("ova.xml", OVA) + member("Ref:1/00000000", first)
              + member("Ref:1/00000001", b"") + member("Ref:1/00000003", later) + bytes(1024))
    items = [(i.offset, i.data[:1], len(i.data)) for i in read_xva(io.BytesIO(stream))
             if i.kind == "block"]
    assert items == [(0, b"a", MiB), (MiB, b"", 0), (2 * MiB, b"b", MiB)]


def test_chunk_numbers_must_increase():
    stream = (member("ova.xml", OVA) + member("Ref:1/00000002", bytes(512))
              + member("Ref:1/00000002", bytes(512)) + bytes(1024))
    with pytest.raises(XvaFormatError, match="strictly increase"):
        list(read_xva(io.BytesIO(stream)))


def test_a_truncated_stream_is_an_error():
    stream = member("ova.xml", OVA) + member("Ref:1/00000000", bytes(CHUNK))[:4096]
    with pytest.raises(XvaFormatError, match="stream ended"):
        list(read_xva(io.BytesIO(stream)))


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT,
                                        tarfile.USTAR_FORMAT])
def test_gnu_pax_and_ustar_archives_are_read(tmp_path, tar_format):
    long_ref = "Ref:1" if tar_format == tarfile.USTAR_FORMAT else "Ref:" + "7" * 120
    chunk = random.Random(9).randbytes(MiB)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for name, data in (("ova.xml", OVA), (f"{long_ref}/00000000", chunk),
                           (f"{long_ref}/00000000.xxhash",
                            b"%016X" % xxhash.xxh64_intdigest(chunk)),
                           (f"{long_ref}/00000002", chunk[:512]),
                           (f"{long_ref}/00000002.xxhash",
                            b"%016X" % xxhash.xxh64_intdigest(chunk[:512]))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if tar_format == tarfile.PAX_FORMAT:
                info.pax_headers = {"comment": "made by python"}
            tar.addfile(info, io.BytesIO(data))
    items = list(read_xva(open_decompressed(io.BytesIO(buffer.getvalue()))))
    assert [(i.kind, i.ref, i.offset) for i in items] == [
        ("ova.xml", None, 0), ("block", long_ref, 0), ("block", long_ref, 2 * MiB)]
    assert items[1].data == chunk


def test_a_disk_size_not_a_multiple_of_512_still_round_trips(store):
    size = 2 * MiB + 1000
    store.create("a", size)
    store.write("a", size - 10, b"0123456789")
    with store.open_reader("a") as reader:
        xva = xva_bytes([("Ref:1", reader)])
    _, disks = reassemble(read_xva(io.BytesIO(xva)), {"Ref:1": size})
    assert disks["Ref:1"] == store.read("a", 0, size)
