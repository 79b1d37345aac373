"""The upload bodies' lengths are known before any chunk is read, and exact."""
import io
import random
from datetime import datetime, timezone

import pytest

from backups.formats.vhd import read_vhd_stream
from backups.formats.xva import XvaStreamReader, parse_ova_xml
from backups.repository import LocalBackend, Repository
from backups.restore.streams import (
    StreamLengthMismatch,
    checked,
    nonzero_ranges,
    raw_upload,
    vhd_length,
    vhd_upload,
    xva_chunks_with_data,
    xva_upload,
)

MiB = 1 << 20

OVA = b"""<value><struct><member><name>version</name><value><struct><member><name>export_vsn</name>
<value>2</value></member></struct></value></member><member><name>objects</name><value><array><data>
<value><struct><member><name>class</name><value>VM</value></member><member><name>id</name><value>Ref:1</value></member>
<member><name>snapshot</name><value><struct><member><name>name_label</name><value>vm</value></member>
<member><name>VBDs</name><value><array><data><value>Ref:2</value></data></array></value></member>
<member><name>suspend_VDI</name><value>OpaqueRef:NULL</value></member></struct></value></member></struct></value>
<value><struct><member><name>class</name><value>VBD</value></member><member><name>id</name><value>Ref:2</value></member>
<member><name>snapshot</name><value><struct><member><name>VM</name><value>Ref:1</value></member>
<member><name>VDI</name><value>Ref:3</value></member><member><name>userdevice</name><value>0</value></member>
<member><name>type</name><value>Disk</value></member></struct></value></member></struct></value>
<value><struct><member><name>class</name><value>VDI</value></member><member><name>id</name><value>Ref:3</value></member>
<member><name>snapshot</name><value><struct><member><name>virtual_size</name><value>SIZE</value></member>
</struct></value></member></struct></value></data></array></value></member></struct></value>"""


def disk_content(size, seed):
    """Some 64 KiB blocks of random data in a zero disk, plus the very end."""
    rng = random.Random(seed)
    data = bytearray(size)
    for _ in range(12):
        offset = rng.randrange(0, size // 65536) * 65536
        data[offset:offset + 65536] = rng.randbytes(65536)
    data[-512:] = rng.randbytes(512)
    return bytes(data)


def stored_disk(tmp_path, chunk_size, content):
    directory = tmp_path / f"store-{chunk_size}"
    directory.mkdir()
    repo = Repository.create(LocalBackend(str(directory)), encryption=False, chunk_size=chunk_size)
    with repo.start_backup("vm", datetime(2026, 1, 1, tzinfo=timezone.utc)) as writer:
        disk = writer.add_disk("vbd0", len(content))
        for offset in range(0, len(content), chunk_size):
            disk.write(offset, content[offset:offset + chunk_size])
        disk.finish()
        manifest = writer.commit()
    return repo, manifest


def pieces(repo, manifest):
    return ((o, d) for o, d in repo.open_disk(manifest.id, "vbd0").chunks() if d is not None)


@pytest.mark.parametrize("chunk_size", [256 * 1024, MiB, 4 * MiB])
@pytest.mark.parametrize("size", [512 * 1024, 9 * MiB + 4096, 16 * MiB])
def test_the_xva_is_exactly_as_long_as_announced_and_carries_the_disk(tmp_path, chunk_size, size):
    content = disk_content(size, seed=size + chunk_size)
    repo, manifest = stored_disk(tmp_path, chunk_size, content)
    entry = manifest.disk("vbd0")
    ova = OVA.replace(b"SIZE", str(size).encode())
    with_data = xva_chunks_with_data(entry, repo.read_chunk)

    for checksum in ("xxhash", "sha1"):
        upload = xva_upload(ova, [("Ref:3", size, with_data, pieces(repo, manifest))], checksum=checksum)
        body = b"".join(upload.blocks)
        assert len(body) == upload.length
        reader = XvaStreamReader(io.BytesIO(body))
        assert parse_ova_xml(reader.ova_xml()).vm["name_label"] == "vm"
        restored = bytearray(size)
        for _, offset, data in reader.blocks():
            restored[offset:offset + len(data)] = data
        assert bytes(restored) == content


@pytest.mark.parametrize("size", [3 * MiB, 5 * MiB + 512])
def test_the_vhd_and_raw_bodies_are_exact(tmp_path, size):
    content = disk_content(size, seed=3)
    repo, manifest = stored_disk(tmp_path, MiB, content)
    entry = manifest.disk("vbd0")

    vhd = vhd_upload(size, nonzero_ranges(entry), pieces(repo, manifest))
    body = b"".join(vhd.blocks)
    raw = raw_upload(size, pieces(repo, manifest))

    assert len(body) == vhd.length == vhd_length(size, nonzero_ranges(entry))
    virtual_size, vhd_pieces = read_vhd_stream(io.BytesIO(body))
    restored = bytearray(virtual_size)
    for offset, data in vhd_pieces:
        restored[offset:offset + len(data)] = data
    assert bytes(restored) == content
    assert b"".join(raw.blocks) == content and raw.length == size


def test_a_stream_that_does_not_match_its_length_fails_loudly():
    with pytest.raises(StreamLengthMismatch):
        list(checked([b"abc", b"def"], 5))
    with pytest.raises(StreamLengthMismatch):
        list(checked([b"abc"], 5))
    assert b"".join(checked([b"abcde"], 5)) == b"abcde"
