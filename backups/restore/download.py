"""One disk of a restore point as a file: raw, or a sparse dynamic VHD, streamed from the
verified chunks with its exact length known up front."""
from dataclasses import dataclass
from typing import Iterator

from ..stores import open_repository
from .streams import nonzero_ranges, raw_upload, vhd_fits, vhd_upload

FORMATS = ("raw", "vhd")


class DownloadError(ValueError):
    """The disk cannot be served in the asked format; the message says why."""


@dataclass
class DiskDownload:
    filename: str
    content_type: str
    length: int
    blocks: Iterator[bytes]


def disk_download(point, disk_key: str, fmt: str = "raw") -> DiskDownload:
    if fmt not in FORMATS:
        raise DownloadError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    repo = open_repository(point.store)
    manifest = repo.load_manifest(point.point_id)
    try:
        disk = manifest.disk(disk_key)
    except KeyError:
        keys = ", ".join(d.key for d in manifest.disks)
        raise DownloadError(f"the restore point has no disk {disk_key!r}; it has {keys}") from None
    reader = repo.open_disk(point.point_id, disk_key)
    pieces = ((offset, data) for offset, data in reader.chunks() if data is not None)
    stamp = point.taken_at.strftime("%Y%m%dT%H%M%SZ")
    name = f"{point.vm_name}-{disk_key}-{stamp}".replace("/", "_").replace(" ", "_")
    if fmt == "vhd":
        if not vhd_fits(disk.virtual_size):
            raise DownloadError("this disk is too large for a VHD (2040 GiB at most): download it raw")
        upload = vhd_upload(disk.virtual_size, nonzero_ranges(disk), pieces)
        return DiskDownload(f"{name}.vhd", "application/vhd", upload.length, upload.blocks)
    upload = raw_upload(disk.virtual_size, pieces)
    return DiskDownload(f"{name}.raw", "application/octet-stream", upload.length, upload.blocks)
