"""A restore point as a standard XVA file: what `xe vm-export` writes, streamed from the point's
verified chunks with its exact length known up front (nothing staged on disk, memory bounded
by one chunk). Any XenServer / XCP-ng imports it (`xe vm-import`), without sesamweb.

The VM is described as the restore point holds it (ova.xml), presented as the VM the backup's
snapshot was taken of; its memory image comes along where the point has one (the import is
then a suspended VM), else the VM is halted.
"""
from dataclasses import dataclass
from typing import Callable, Iterator

from ..formats.xva import NULL_REF, OvaMetadata, dump_ova_xml, parse_ova_xml
from ..stores import open_repository
from .metadata import disk_key_of
from .plan import describe_point
from .streams import xva_chunks_with_data, xva_upload


@dataclass
class XvaExport:
    filename: str
    length: int
    blocks: Iterator[bytes]


def export_ova_xml(ova_xml: bytes, *, with_memory: bool) -> tuple[bytes, dict]:
    """ova.xml of the exported VM, with {disk key: ova ref} of the disks it carries."""
    meta = parse_ova_xml(ova_xml)
    vm = meta.vm
    vm.update(is_a_snapshot=False, snapshot_of=NULL_REF, is_a_template=False)
    suspend_ref = vm.get("suspend_VDI", NULL_REF)
    if not with_memory:
        vm.update(power_state="Halted", suspend_VDI=NULL_REF)
        meta.objects = [o for o in meta.objects if o["id"] != suspend_ref]
    meta = OvaMetadata(version=dict(meta.version), objects=meta.objects)
    return dump_ova_xml(meta), {disk_key_of(disk.userdevice): disk.ref for disk in meta.disks()}


def point_xva(point, *, on_progress: Callable[[int, int], None] | None = None, checksum="sha1") -> XvaExport:
    """The XVA of one restore point; on_progress(bytes covered, total) as disks are read.

    SHA-1 checksum members by default: every xapi reads them (XXH64 only from 8.x on), and so
    do other tools (Debian's xva-img knows no other)."""
    repo = open_repository(point.store)
    manifest = repo.load_manifest(point.point_id)
    details = describe_point(point, manifest)
    ova_xml, refs = export_ova_xml(details.ova_xml, with_memory=details.has_memory)
    total = sum(manifest.disk(key).virtual_size for key in refs)
    disks, done_before = [], 0
    for key, ref in refs.items():
        entry = manifest.disk(key)
        disks.append((ref, entry.virtual_size, xva_chunks_with_data(entry, repo.read_chunk),
                      _pieces(repo, point.point_id, entry, done_before, total, on_progress)))
        done_before += entry.virtual_size
    upload = xva_upload(ova_xml, disks, checksum=checksum)
    stamp = point.taken_at.strftime("%Y%m%dT%H%M%SZ")
    name = f"{point.vm_name}-{stamp}.xva".replace("/", "_").replace(" ", "_")
    return XvaExport(name, upload.length, upload.blocks)


def _pieces(repo, point_id, entry, done_before, total, on_progress):
    """The disk's chunks that hold data, verified as they are read."""
    chunks = repo.open_disk(point_id, entry.key).chunks()
    try:
        for offset, data in chunks:
            if data is not None:
                yield offset, data
            if on_progress:
                on_progress(done_before + min(entry.virtual_size, offset + entry.chunk_size), total)
    finally:
        chunks.close()
