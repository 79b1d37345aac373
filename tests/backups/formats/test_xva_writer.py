import io
import subprocess
import tarfile

import pytest
import xxhash

from backups.formats.xva import XvaStreamReader, XvaWriter
from tests.backups.formats.conftest import MiB, need_tool
from tests.backups.formats.ova_sample import make_ova_xml
from tests.backups.formats.xva_helpers import reassemble


def nonzero_pieces(disk: bytes, size: int = MiB):
    """What a restore feeds the writer: (offset, data) of the non-zero chunks only."""
    for offset in range(0, len(disk), size):
        piece = disk[offset : offset + size]
        if piece.count(0) != len(piece):
            yield offset, piece


def write_xva(disks: dict[str, bytes], checksum="xxhash", piece_size=MiB) -> bytes:
    ova = make_ova_xml({ref: len(data) for ref, data in disks.items()})
    writer = XvaWriter(ova, checksum=checksum)
    return b"".join(writer.stream([(ref, len(data), nonzero_pieces(data, piece_size))
                                   for ref, data in disks.items()]))


def test_xva_img_unpacks_the_writers_sha1_export_to_the_original_disk(disk_odd, tmp_path):
    need_tool("xva-img")
    need_tool("tar")
    (tmp_path / "export.xva").write_bytes(write_xva({"Ref:5": disk_odd}, checksum="sha1"))
    subprocess.run(["tar", "-xf", "export.xva"], cwd=tmp_path, check=True)
    subprocess.run(["xva-img", "-p", "disk-export", "Ref:5/", "disk.raw"], cwd=tmp_path,
                   check=True, capture_output=True)
    assert (tmp_path / "disk.raw").read_bytes() == disk_odd


def test_every_xxhash_member_is_the_uppercase_xxh64_of_its_data_member(disk_odd):
    xva = write_xva({"Ref:5": disk_odd})
    with tarfile.open(fileobj=io.BytesIO(xva)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[0] == "ova.xml"
        data_members = [m for m in members[1:] if "." not in m.name]
        for member in data_members:
            digest = tar.extractfile(names[names.index(member.name) + 1]).read()
            assert names[names.index(member.name) + 1] == member.name + ".xxhash"
            assert digest == b"%016X" % xxhash.xxh64_intdigest(tar.extractfile(member).read())
    numbers = [int(m.name.split("/")[1]) for m in data_members]
    # zero chunks left out (the sample has some), chunk 0 and the short last chunk present
    assert numbers[0] == 0 and numbers[-1] == 13 and 6 not in numbers
    assert data_members[-1].size == 3 * 512


def test_headers_are_v7_as_xapi_writes_them(disk_odd):
    xva = write_xva({"Ref:5": disk_odd})
    header = xva[:512]
    assert header[257:512] == bytes(255)  # no ustar magic, no user/group names
    assert header[156:157] == b"\0" and header[100:108] == b"0000400\0"
    stored = header[148:156]
    assert stored[7:8] == b"\0" and int(stored[:7], 8) == sum(header[:148]) + 256 \
        + sum(header[156:])
    assert xva.endswith(bytes(1024)) and len(xva) % 512 == 0


def test_the_reader_reads_back_what_the_writer_wrote(disk_24m, disk_odd):
    # Ref:10 sorts before Ref:2 (lexicographic, as xapi orders VDIs)
    disks = {"Ref:2": disk_24m, "Ref:10": disk_odd}
    xva = write_xva(disks, piece_size=4 * MiB)
    reader = XvaStreamReader(io.BytesIO(xva))
    order = []
    placed = {ref: bytearray(len(data)) for ref, data in disks.items()}
    for ref, offset, data in reader.blocks():
        if ref not in order:
            order.append(ref)
        placed[ref][offset : offset + len(data)] = data
    assert order == ["Ref:10", "Ref:2"]
    assert {ref: bytes(data) for ref, data in placed.items()} == disks


def test_an_all_zero_disk_still_has_chunk_0_and_its_last_chunk():
    xva = write_xva({"Ref:1": bytes(5 * MiB)})
    with tarfile.open(fileobj=io.BytesIO(xva)) as tar:
        assert tar.getnames() == ["ova.xml", "Ref:1/00000000", "Ref:1/00000000.xxhash",
                                  "Ref:1/00000004", "Ref:1/00000004.xxhash"]
    reader = XvaStreamReader(io.BytesIO(xva))
    assert reassemble(reader, {"Ref:1": 5 * MiB}) == {"Ref:1": bytes(5 * MiB)}


def test_unaligned_pieces_are_regrouped_into_whole_chunks(disk_odd):
    pieces = [(o, disk_odd[o : o + 300_000]) for o in range(0, len(disk_odd), 300_000)]
    ova = make_ova_xml({"Ref:1": len(disk_odd)})
    xva = b"".join(XvaWriter(ova).stream([("Ref:1", len(disk_odd), iter(pieces))]))
    assert reassemble(XvaStreamReader(io.BytesIO(xva)), {"Ref:1": len(disk_odd)}) \
        == {"Ref:1": disk_odd}


def test_the_writer_refuses_sizes_that_disagree_with_ova_xml():
    ova = make_ova_xml({"Ref:1": 4 * MiB})
    with pytest.raises(ValueError, match="differs from ova.xml"):
        list(XvaWriter(ova).stream([("Ref:1", 8 * MiB, iter([]))]))
    with pytest.raises(ValueError, match="runs past virtual_size"):
        list(XvaWriter(ova).stream([("Ref:1", 4 * MiB, iter([(3 * MiB, b"x" * MiB * 2)]))]))
