"""XVA (VM export) tar streams, written and read the way xapi does.

Writer (export.ml / stream_vdi.ml): `ova.xml` first, then each VDI in lexicographic order of
its `Ref:<n>` name as 1 MiB members `Ref:<n>/%08d`, each followed by a checksum member
(`.xxhash`: 16 uppercase hex XXH64; `.checksum`: 40 lowercase hex SHA-1). All-zero chunks
are left out except the first and the last. Headers are old V7 tar headers as ocaml-tar
writes them, and the archive ends with two zero blocks without record padding.

Reader (import.ml): tolerates V7, ustar, GNU and PAX headers and places chunks with xapi's
running-offset rule, so gaps take the size of the first chunk.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import xxhash
import zstandard

CHUNK = 1048576
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_ZERO_CHUNK = bytes(CHUNK)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHECKSUM_EXTENSIONS = {"xxhash": ".xxhash", "sha1": ".checksum"}
_CHUNK_NAME = re.compile(r"^(?P<ref>[^/]+)/(?P<number>\d+)$")
_CHECKSUM_NAME = re.compile(r"^(?P<ref>[^/]+)/(?P<number>\d+)\.(?P<ext>xxhash|checksum)$")


class XvaFormatError(Exception):
    """The stream is not a valid XVA (bad tar header, order, or checksum)."""


@dataclass
class XvaItem:
    kind: str          # "ova.xml" or "block"
    ref: str | None    # "Ref:7" for blocks
    offset: int        # byte offset in the VDI (0 for ova.xml)
    data: bytes


# ----- writing --------------------------------------------------------------------------

def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def tar_header(name: str, size: int, mtime: int = 0) -> bytes:
    """A V7 header as ocaml-tar marshals it: mode 0400, no ustar magic, typeflag NUL."""
    encoded = name.encode()
    if len(encoded) > 100:
        raise ValueError(f"tar member name too long for a V7 header: {name!r}")
    header = bytearray(_BLOCK)
    header[0:len(encoded)] = encoded
    header[100:108] = _octal(0o400, 8)
    header[108:116] = _octal(0, 8)
    header[116:124] = _octal(0, 8)
    header[124:136] = _octal(size, 12)
    header[136:148] = _octal(mtime, 12)
    header[148:156] = b" " * 8
    header[148:156] = b"%07o\0" % sum(header)
    return bytes(header)


def _padding(size: int) -> bytes:
    return _ZERO_BLOCK[:-size % _BLOCK]


def _member(name: str, data: bytes, mtime: int = 0) -> list[bytes]:
    return [tar_header(name, len(data), mtime), data, _padding(len(data))]


def _checksum_member(name: str, data: bytes, checksum: str) -> list[bytes]:
    if checksum == "xxhash":
        text = b"%016X" % xxhash.xxh64_intdigest(data)
    else:
        text = hashlib.sha1(data).hexdigest().encode()
    return _member(name + _CHECKSUM_EXTENSIONS[checksum], text)


def _allocated_chunks(reader) -> set[int]:
    chunks = set()
    for offset, length in reader.allocated_extents():
        chunks.update(range(offset // CHUNK, (offset + length - 1) // CHUNK + 1))
    return chunks


def write_xva(ova_xml: bytes, disks: list, *, checksum: str,
              export_time: int) -> Iterator[bytes]:
    """Yield an XVA tar stream; `disks` is a list of (ref name, DiskReader)."""
    if checksum not in _CHECKSUM_EXTENSIONS:
        raise ValueError(f"checksum must be 'xxhash' or 'sha1', not {checksum!r}")
    yield b"".join(_member("ova.xml", ova_xml, export_time))
    for ref, reader in sorted(disks, key=lambda item: item[0]):
        # A size that is not a multiple of 512 gives a last chunk xapi's importer misreads;
        # xapi writes it anyway, and so does this writer (read_xva copes).
        size = reader.size
        count = -(-size // CHUNK)
        allocated = _allocated_chunks(reader)
        for number in range(count):
            offset = number * CHUNK
            length = min(CHUNK, size - offset)
            edge = number == 0 or number == count - 1
            if number in allocated:
                data = reader.read(offset, length)
                if not edge and data == _ZERO_CHUNK[:length]:
                    continue
            elif edge:
                data = _ZERO_CHUNK[:length]
            else:
                continue
            name = f"{ref}/{number:08d}"
            yield b"".join(_member(name, data) + _checksum_member(name, data, checksum))
    yield _ZERO_BLOCK * 2


# ----- reading --------------------------------------------------------------------------

def _parse_number(field: bytes, what: str, name: str) -> int:
    if field[:1] and field[0] & 0x80:
        raise XvaFormatError(f"member {name!r}: base-256 {what} is not supported")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise XvaFormatError(f"member {name!r}: invalid {what} field {field!r}") from None


def _header_checksum_ok(header: bytes) -> bool:
    stored = header[148:156].split(b"\0", 1)[0].strip(b" ")
    try:
        expected = int(stored, 8)
    except ValueError:
        return False
    unsigned = sum(header[:148]) + 256 + sum(header[156:])
    signed = unsigned - sum(b for b in header[:148] + header[156:] if b > 127) * 256
    return expected in (unsigned, signed)


def _read_exact(stream: BinaryIO, size: int, what: str) -> bytes:
    data = stream.read(size) or b""
    if len(data) == size:
        return data
    buffer = bytearray(data)
    while len(buffer) < size:
        more = stream.read(size - len(buffer))
        if not more:
            raise XvaFormatError(f"stream ended inside {what} ({len(buffer)} of {size} bytes)")
        buffer += more
    return bytes(buffer)


def _tar_members(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular member; resolves GNU long names and PAX paths."""
    long_name = None
    pax_path = None
    while True:
        header = stream.read(_BLOCK) or b""
        if len(header) < _BLOCK and header:
            header += _read_exact(stream, _BLOCK - len(header), "a tar header")
        if not header:
            raise XvaFormatError("stream ended without the tar end-of-archive marker")
        if header == _ZERO_BLOCK:
            return   # end of archive (the second zero block is not needed)
        raw_name = header[:100].split(b"\0", 1)[0]
        if header[257:262] == b"ustar" and header[345]:
            raw_name = header[345:500].split(b"\0", 1)[0] + b"/" + raw_name
        name = raw_name.decode("utf-8", "replace")
        if not _header_checksum_ok(header):
            raise XvaFormatError(f"bad tar header checksum for member {name!r}")
        size = _parse_number(header[124:136], "size", name)
        typeflag = header[156:157]
        data = _read_exact(stream, size, f"member {name!r}")
        _read_exact(stream, -size % _BLOCK, f"padding of member {name!r}")
        if typeflag == b"L":
            long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
            continue
        if typeflag == b"x":
            pax_path = _pax_path(data) or pax_path
            continue
        if typeflag == b"g":
            continue
        if typeflag not in (b"\0", b"0"):
            continue   # directories, links: not part of an XVA, ignored like xapi does
        name = pax_path or long_name or name
        long_name = pax_path = None
        yield name, data


def _pax_path(records: bytes) -> str | None:
    path = None
    position = 0
    while position < len(records):
        space = records.find(b" ", position)
        if space < 0:
            raise XvaFormatError("malformed PAX extended header")
        length = int(records[position:space])
        key, _, value = records[space + 1:position + length - 1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "replace")
        position += length
    return path


class _VdiPlacement:
    """xapi's running-offset rule for one VDI's chunk members."""

    def __init__(self, ref: str):
        self.ref = ref
        self.last_number = -1
        self.first_length = None
        self.offset = 0

    def place(self, number: int, name: str, length: int) -> int:
        if number <= self.last_number:
            raise XvaFormatError(f"member {name!r}: chunk numbers of {self.ref} must "
                                 f"strictly increase (after {self.last_number:08d})")
        if self.first_length is None:
            self.first_length = length if number == 0 else CHUNK
        start = self.offset + (number - self.last_number - 1) * self.first_length
        self.offset = start + length
        self.last_number = number
        return start


def read_xva(stream: BinaryIO, *, verify: bool = True) -> Iterator[XvaItem]:
    """Parse a plain (decompressed) XVA stream into ova.xml and placed VDI chunks.

    A chunk is yielded only once its checksum member (if any) was checked, so a consumer
    never stores data that then fails verification."""
    members = _tar_members(stream)
    try:
        name, data = next(members)
    except StopIteration:
        raise XvaFormatError("empty archive: ova.xml missing") from None
    if name != "ova.xml":
        raise XvaFormatError(f"first member must be ova.xml, found {name!r}")
    yield XvaItem("ova.xml", None, 0, data)
    placements: dict[str, _VdiPlacement] = {}
    pending: tuple[str, XvaItem] | None = None
    for name, data in members:
        checksum_match = _CHECKSUM_NAME.match(name)
        if checksum_match:
            if pending is None or pending[0] != name.rsplit(".", 1)[0]:
                raise XvaFormatError(f"checksum member {name!r} does not follow its chunk")
            if verify:
                _verify(name, checksum_match["ext"], pending[1].data, data)
            yield pending[1]
            pending = None
            continue
        if pending is not None:
            yield pending[1]   # export_vsn 0: no inline checksums
            pending = None
        chunk_match = _CHUNK_NAME.match(name)
        if not chunk_match:
            continue   # e.g. the checksum table of very old exports
        ref = chunk_match["ref"]
        placement = placements.setdefault(ref, _VdiPlacement(ref))
        offset = placement.place(int(chunk_match["number"]), name, len(data))
        pending = (name, XvaItem("block", ref, offset, data))
    if pending is not None:
        yield pending[1]


def _verify(name: str, extension: str, data: bytes, stored: bytes) -> None:
    if extension == "xxhash":
        expected = b"%016X" % xxhash.xxh64_intdigest(data)
    else:
        expected = hashlib.sha1(data).hexdigest().encode()
    if stored != expected:
        raise XvaFormatError(f"checksum mismatch in member {name!r}: stored "
                             f"{stored[:64]!r}, computed {expected.decode()}")


# ----- compression ----------------------------------------------------------------------

class _Prefixed(io.RawIOBase):
    """A stream with some already-read bytes put back in front."""

    def __init__(self, prefix: bytes, stream: BinaryIO):
        self._prefix = prefix
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        data = self._stream.read(len(buffer))
        if not data:
            return 0
        buffer[:len(data)] = data
        return len(data)


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """Detect compression as xapi's /import does: a valid tar header means plain, the zstd
    magic means zstd, anything else is taken as gzip."""
    first = b""
    while len(first) < _BLOCK:
        more = stream.read(_BLOCK - len(first))
        if not more:
            break
        first += more
    plain = io.BufferedReader(_Prefixed(first, stream), buffer_size=CHUNK)
    if len(first) == _BLOCK and (first == _ZERO_BLOCK or _header_checksum_ok(first)):
        return plain
    if first.startswith(_ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(plain, read_across_frames=True,
                                                          read_size=CHUNK)
    return gzip.GzipFile(fileobj=plain, mode="rb")
