"""Helpers shared by the XVA tests: build XVAs with xva-img or by hand, reassemble disks."""
import io
import subprocess
import tarfile

from backups.formats.xva import XvaStreamReader


def pack_with_xva_img(workdir, disks: dict[str, bytes], ova_xml: bytes):
    """An XVA made by xva-img (disk-import + package: SHA-1 .checksum members)."""
    (workdir / "ova.xml").write_bytes(ova_xml)
    members = ["./ova.xml"]
    for ref, data in disks.items():
        image = workdir / f"{ref.replace(':', '_')}.raw"
        image.write_bytes(data)
        (workdir / ref).mkdir()
        subprocess.run(["xva-img", "disk-import", ref, image.name], cwd=workdir, check=True,
                       capture_output=True)
        members.append(f"./{ref}")
    subprocess.run(["xva-img", "package", "out.xva", *members], cwd=workdir, check=True,
                   capture_output=True)
    return workdir / "out.xva"


def reassemble(reader: XvaStreamReader, sizes: dict[str, int]) -> dict[str, bytes]:
    disks = {ref: bytearray(size) for ref, size in sizes.items()}
    for ref, offset, data in reader.blocks():
        disks[ref][offset : offset + len(data)] = data
    return {ref: bytes(data) for ref, data in disks.items()}


class Trickle(io.RawIOBase):
    """A stream whose reads return at most `step` bytes, like a slow socket."""

    def __init__(self, data: bytes, step: int = 1000):
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self):
        return True

    def readinto(self, buf):
        n = min(len(buf), self._step, len(self._data) - self._pos)
        buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def hand_made_xva(ova_xml: bytes, members: list[tuple[str, bytes]]) -> bytes:
    """A tar written with Python's tarfile (ustar headers), members in the given order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [("ova.xml", ova_xml), *members]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
