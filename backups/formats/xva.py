"""XVA: the tar stream of xapi's ``GET /export`` and ``PUT /import`` (xenapi-notes section 6).

Layout: ``ova.xml`` first, then for each VDI (lexicographic ``Ref:<n>`` order) 1 MiB data
members ``Ref:<n>/%08d`` each followed by a checksum member (``.xxhash``: XXH64 as 16
uppercase hex digits, or ``.checksum``: SHA-1 as 40 lowercase hex digits), then two zero
blocks. All-zero chunks are left out except chunk 0 and the last one; a reader places data
with xapi's running-offset rule so that empty keepalive blocks do not shift anything.
"""
from __future__ import annotations

import hashlib
import re
import time
import xmlrpc.client
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator

import xxhash
import zstandard

CHUNK_SIZE = 1 << 20  # xapi's stream_vdi chunk_size
BLOCK = 512
NULL_REF = "OpaqueRef:NULL"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
READ_SIZE = 1 << 20  # compressed bytes asked from the network per read

_DATA_MEMBER = re.compile(r"^(Ref:[^/]+)/(\d{8})$")
_CHECKSUM_MEMBER = re.compile(r"^(Ref:[^/]+)/(\d{8})\.(xxhash|checksum)$")
_ZERO_CHUNK = bytes(CHUNK_SIZE)


class XvaError(Exception):
    """The XVA stream is damaged or not what xapi writes; the message names the member."""


# --------------------------------------------------------------------------- checksums

def xxhash_text(data) -> str:
    return "%016X" % xxhash.xxh64_intdigest(data)


def sha1_text(data) -> str:
    return hashlib.sha1(data).hexdigest()


_CHECKSUMS = {"xxhash": xxhash_text, "checksum": sha1_text}


# --------------------------------------------------------------------------- byte sources

class _CountingStream:
    """Counts the (compressed) bytes taken from the caller's stream, for progress."""

    def __init__(self, stream: BinaryIO, prefix: bytes = b""):
        self._stream = stream
        self._prefix = prefix
        self.count = len(prefix)

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            if n < 0:
                data, self._prefix = self._prefix + self.read(), b""
            else:
                data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        data = self._stream.read(n)
        self.count += len(data)
        return data


class _GzipSource:
    """Streaming gunzip with bounded output per call; concatenated gzip members allowed."""

    def __init__(self, raw: _CountingStream):
        self._raw = raw
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def read(self, n: int) -> bytes:
        try:
            return self._read(n)
        except zlib.error as exc:
            raise XvaError(f"gzip stream is damaged: {exc}") from exc

    def _read(self, want: int) -> bytes:
        while True:
            if self._inflate.eof:  # end of one gzip member; another may follow
                rest = self._inflate.unused_data + self._inflate.unconsumed_tail \
                    or self._raw.read(READ_SIZE)
                if not rest:
                    return b""
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                data = self._inflate.decompress(rest, want)
            elif self._inflate.unconsumed_tail:
                data = self._inflate.decompress(self._inflate.unconsumed_tail, want)
            else:
                compressed = self._raw.read(READ_SIZE)
                if not compressed:
                    raise XvaError("gzip stream ended before its end marker (truncated export)")
                data = self._inflate.decompress(compressed, want)
            if data:
                return data


class _ZstdSource:
    def __init__(self, raw: _CountingStream):
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            raw, read_size=READ_SIZE, read_across_frames=True
        )

    def read(self, n: int) -> bytes:
        try:
            return self._reader.read(n)
        except zstandard.ZstdError as exc:
            raise XvaError(f"zstd stream is damaged: {exc}") from exc


def _read_full(source, n: int) -> bytes:
    """Exactly n bytes (short reads looped); fewer only at end of stream.

    Read with read(), not readinto() a zeroed buffer: the stream fills a new bytes object
    directly, which the backup writer can then keep without copying it."""
    data = source.read(n)
    if len(data) == n or not data:
        return data
    pieces = [data]
    got = len(data)
    while got < n:
        more = source.read(n - got)
        if not more:
            break
        pieces.append(more)
        got += len(more)
    return b"".join(pieces)


def _looks_like_tar_header(block: bytes) -> bool:
    return len(block) == BLOCK and _header_checksum_ok(block)


def _header_checksum_ok(block) -> bool:
    try:
        stored = int(bytes(block[148:156]).split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return stored == unsigned


# --------------------------------------------------------------------------- tar headers

def _parse_number(field_bytes: bytes, what: str, member: str) -> int:
    if field_bytes and field_bytes[0] & 0x80:  # GNU base-256
        return int.from_bytes(bytes([field_bytes[0] & 0x7F]) + field_bytes[1:], "big")
    text = field_bytes.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise XvaError(f"tar header of {member!r}: bad {what} field {field_bytes!r}") from None


def _v7_header(name: str, size: int, mtime: int = 0) -> bytes:
    """A tar header as xapi (ocaml-tar) writes it: V7, mode 0400, checksum "%07o\\0"."""
    raw = name.encode()
    if len(raw) > 99:
        raise ValueError(f"tar member name too long for a V7 header: {name!r}")
    header = bytearray(BLOCK)
    header[0 : len(raw)] = raw
    header[100:108] = b"0000400\0"
    header[108:116] = b"0000000\0"
    header[116:124] = b"0000000\0"
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"%011o\0" % mtime
    header[148:156] = b" " * 8
    header[148:156] = b"%07o\0" % sum(header)
    return bytes(header)


def _padding(size: int) -> int:
    return -size % BLOCK


# --------------------------------------------------------------------------- ova.xml

@dataclass
class XvaDisk:
    """A VDI whose blocks travel in the XVA stream."""

    ref: str  # "Ref:7" as used in member names
    virtual_size: int
    name_label: str = ""
    vdi_type: str = ""  # VDI.type: user, system, suspend, ...
    userdevice: str = ""  # of the VBD that plugs it ("" for a suspend image)
    bootable: bool = False
    mode: str = "RW"


@dataclass
class OvaMetadata:
    version: dict
    objects: list[dict]  # {"class", "id", "snapshot"} in file order
    by_ref: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        self.by_ref = {obj["id"]: obj for obj in self.objects}

    def of_class(self, cls: str) -> list[tuple[str, dict]]:
        return [(o["id"], o["snapshot"]) for o in self.objects if o["class"] == cls]

    @property
    def export_vsn(self) -> int:
        return int(self.version.get("export_vsn", 0))

    @property
    def vm_ref(self) -> str:
        vms = [ref for ref, rec in self.of_class("VM") if not _is_true(rec.get("is_a_snapshot"))]
        vms = vms or [ref for ref, _ in self.of_class("VM")]
        if not vms:
            raise XvaError("ova.xml holds no VM object")
        return vms[0]

    @property
    def vm(self) -> dict:
        return self.by_ref[self.vm_ref]["snapshot"]

    def record(self, ref: str) -> dict | None:
        obj = self.by_ref.get(ref)
        return obj["snapshot"] if obj else None

    @property
    def vbds(self) -> list[dict]:
        return [rec for _, rec in self.of_class("VBD") if rec.get("VM") == self.vm_ref]

    @property
    def vdis(self) -> dict[str, dict]:
        return dict(self.of_class("VDI"))

    @property
    def vifs(self) -> list[dict]:
        return sorted(
            (rec for _, rec in self.of_class("VIF") if rec.get("VM") == self.vm_ref),
            key=lambda rec: int(rec.get("device") or 0),
        )

    @property
    def networks(self) -> dict[str, dict]:
        return dict(self.of_class("network"))

    def disks(self) -> list[XvaDisk]:
        """The VDIs xapi streams for this VM, in stream order (lexicographic ref)."""
        found: dict[str, XvaDisk] = {}
        for vbd in self.vbds:
            ref = vbd.get("VDI", NULL_REF)
            if vbd.get("type") == "CD" or ref == NULL_REF or ref not in self.by_ref:
                continue
            found[ref] = self._disk(ref, vbd)
        suspend = self.vm.get("suspend_VDI", NULL_REF)
        if suspend != NULL_REF and suspend in self.by_ref:
            found[suspend] = self._disk(suspend, None)
        return [found[ref] for ref in sorted(found)]

    def virtual_size(self, ref: str) -> int:
        rec = self.record(ref)
        if rec is None:
            raise XvaError(f"ova.xml has no VDI {ref}")
        return int(rec["virtual_size"])

    def _disk(self, ref: str, vbd: dict | None) -> XvaDisk:
        vdi = self.by_ref[ref]["snapshot"]
        return XvaDisk(
            ref=ref,
            virtual_size=int(vdi["virtual_size"]),
            name_label=vdi.get("name_label", ""),
            vdi_type=vdi.get("type", ""),
            userdevice=vbd.get("userdevice", "") if vbd else "",
            bootable=_is_true(vbd.get("bootable")) if vbd else False,
            mode=vbd.get("mode", "RW") if vbd else "RW",
        )


def _is_true(value) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def parse_ova_xml(data: bytes) -> OvaMetadata:
    """Decode ova.xml (an XML-RPC ``<value><struct>`` of version and objects)."""
    body = data.strip()
    if body.startswith(b"<?xml"):
        body = body.split(b"?>", 1)[1].strip()
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise XvaError("ova.xml: DTDs and entities are refused")
    wrapped = b"<methodResponse><params><param>" + body + b"</param></params></methodResponse>"
    try:
        (value,), _ = xmlrpc.client.loads(wrapped)
    except Exception as exc:  # expat errors, bad values
        raise XvaError(f"ova.xml is not a valid XML-RPC value: {exc}") from exc
    if not isinstance(value, dict) or "objects" not in value or "version" not in value:
        raise XvaError("ova.xml lacks the version / objects struct")
    objects = value["objects"]
    for obj in objects:
        if not isinstance(obj, dict) or not {"class", "id", "snapshot"} <= obj.keys():
            raise XvaError(f"ova.xml: malformed object {str(obj)[:80]!r}")
    return OvaMetadata(version=value["version"], objects=objects)


def _xmlrpc_safe(value):
    """XML-RPC <int> is 32-bit; xapi sends int64 fields as strings, so do we."""
    if isinstance(value, dict):
        return {k: _xmlrpc_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_xmlrpc_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) \
            and not -2**31 <= value < 2**31:
        return str(value)
    return value


def dump_ova_xml(meta: OvaMetadata) -> bytes:
    """Encode metadata back to the ova.xml form (typed XML-RPC values)."""
    value = _xmlrpc_safe({"version": meta.version, "objects": meta.objects})
    text = xmlrpc.client.dumps((value,), allow_none=False)
    start, end = text.index("<value>"), text.rindex("</value>") + len("</value>")
    return text[start:end].encode()


def rewrite_ova_xml(
    data: bytes,
    *,
    new_name: str | None = None,
    keep_identity: bool,
    network_map: dict[str, dict] | None = None,
    drop_vifs: Iterable[str] = (),
) -> bytes:
    """Adjust an ova.xml for a restore before it goes to ``PUT /import``.

    new_name: the VM's new name_label.
    keep_identity: False blanks every VIF MAC and the VM's mac_seed, so xapi assigns new
        ones (it does so anyway with ``restore=false``; this makes the XML say the same).
        Keeping UUIDs is decided by the ``restore=true`` flag of the import, not here.
    network_map: source network ``name_label`` -> ``{"name_label": ..., "bridge": ...}`` of
        the target network; xapi's importer matches networks by name_label, then bridge.
    drop_vifs: VIF device numbers ("0", "1", ...) to leave out of the restored VM.
    """
    meta = parse_ova_xml(data)
    vm = meta.vm
    if new_name is not None:
        vm["name_label"] = new_name
    drop = {str(d) for d in drop_vifs}
    dropped = {ref for ref, rec in meta.of_class("VIF") if rec.get("VM") == meta.vm_ref
               and str(rec.get("device")) in drop}
    if dropped:
        meta.objects = [o for o in meta.objects if o["id"] not in dropped]
        vm["VIFs"] = [ref for ref in vm.get("VIFs", []) if ref not in dropped]
        for _, net in meta.of_class("network"):
            net["VIFs"] = [ref for ref in net.get("VIFs", []) if ref not in dropped]
    if not keep_identity:
        for _, vif in meta.of_class("VIF"):
            vif["MAC"] = ""
            vif["MAC_autogenerated"] = True
        vm.get("other_config", {}).pop("mac_seed", None)
    if network_map:
        names = {rec.get("name_label") for _, rec in meta.of_class("network")}
        unknown = set(network_map) - names
        if unknown:
            raise XvaError(f"ova.xml has no network named {sorted(unknown)}")
        for _, net in meta.of_class("network"):
            target = network_map.get(net.get("name_label"))
            if target:
                net["name_label"] = target["name_label"]
                net["bridge"] = target.get("bridge", net.get("bridge", ""))
    return dump_ova_xml(OvaMetadata(version=meta.version, objects=meta.objects))


# --------------------------------------------------------------------------- reader

class XvaStreamReader:
    """Parse an XVA stream on the fly: ova.xml, then the disk blocks in stream order."""

    def __init__(self, stream: BinaryIO, *, compression: str = "auto", verify: bool = True):
        if compression not in ("auto", "none", "gzip", "zstd"):
            raise ValueError(f"unknown compression {compression!r}")
        self._verify = verify
        self._ova: bytes | None = None
        self._pending_name: str | None = None  # PAX / GNU long name for the next member
        self._pending_size: int | None = None
        self._member_index = 0
        prefix = b""
        if compression == "auto":
            counting = _CountingStream(stream)
            prefix = _read_full(counting, BLOCK)
            compression = self._sniff(prefix)
            self._raw = _CountingStream(stream, prefix)
            self._raw.count = counting.count
        else:
            self._raw = _CountingStream(stream)
        self.compression = compression
        if compression == "gzip":
            self._source = _GzipSource(self._raw)
        elif compression == "zstd":
            self._source = _ZstdSource(self._raw)
        else:
            self._source = self._raw

    @property
    def bytes_read(self) -> int:
        return self._raw.count

    @staticmethod
    def _sniff(first: bytes) -> str:
        if _looks_like_tar_header(first):
            return "none"
        if first.startswith(ZSTD_MAGIC):
            return "zstd"
        if first.startswith(GZIP_MAGIC):
            return "gzip"
        if not first:
            raise XvaError("the export stream is empty")
        raise XvaError("the stream is neither a tar, a zstd nor a gzip stream (not an XVA)")

    # -- tar members

    def _next_member(self) -> tuple[str, int] | None:
        """Header of the next regular member as (name, size); None at end of archive."""
        while True:
            header = _read_full(self._source, BLOCK)
            if len(header) < BLOCK:
                raise XvaError("stream ended without the tar end-of-archive marker "
                               "(truncated export)")
            if header == bytes(BLOCK):
                second = _read_full(self._source, BLOCK)
                if len(second) == BLOCK and any(second):
                    raise XvaError("zero block inside the archive followed by data")
                return None
            if not _header_checksum_ok(header):
                raise XvaError(f"bad tar header checksum after member #{self._member_index}")
            name = header[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            if header[257:262] == b"ustar" and header[345]:
                prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
                name = f"{prefix}/{name}"
            size = _parse_number(header[124:136], "size", name)
            kind = header[156:157]
            if kind in (b"x", b"g", b"L"):
                payload = self._read_payload(name, size)
                if kind == b"L":
                    self._pending_name = payload.rstrip(b"\0").decode("utf-8", "replace")
                elif kind == b"x":
                    self._apply_pax(payload)
                continue
            if self._pending_name is not None:
                name, self._pending_name = self._pending_name, None
            if self._pending_size is not None:
                size, self._pending_size = self._pending_size, None
            if kind in (b"0", b"\0", b"7"):
                self._member_index += 1
                return name, size
            if kind == b"5":  # a directory entry carries no data
                continue
            raise XvaError(f"tar member {name!r} has unsupported type {kind!r}")

    def _apply_pax(self, payload: bytes) -> None:
        pos = 0
        while pos < len(payload):
            length_text, _ = payload[pos:].split(b" ", 1)
            record = payload[pos : pos + int(length_text)]
            key, value = record.split(b" ", 1)[1].rstrip(b"\n").split(b"=", 1)
            if key == b"path":
                self._pending_name = value.decode("utf-8", "replace")
            elif key == b"size":
                self._pending_size = int(value)
            pos += int(length_text)

    def _read_payload(self, name: str, size: int) -> bytes:
        data = _read_full(self._source, size)
        padding = _padding(size)
        if len(data) < size or (padding and len(_read_full(self._source, padding)) < padding):
            raise XvaError(f"stream ended inside member {name!r} (truncated export)")
        return data

    # -- public API

    def ova_xml(self) -> bytes:
        """The ova.xml member, which must come first."""
        if self._ova is None:
            member = self._next_member()
            if member is None:
                raise XvaError("the archive is empty (no ova.xml)")
            name, size = member
            if name.lstrip("./") != "ova.xml":
                raise XvaError(f"first member is {name!r}, expected 'ova.xml'")
            if size > 64 << 20:
                raise XvaError(f"ova.xml member is implausibly large ({size} bytes)")
            self._ova = self._read_payload(name, size)
        return self._ova

    def blocks(self) -> Iterator[tuple[str, int, bytes]]:
        """(VDI ref, byte offset in the VDI, data) for each non-empty data member."""
        meta = parse_ova_xml(self.ova_xml())
        seen: set[str] = set()
        ref = None
        last_n = first_len = offset = 0
        while (member := self._next_member()) is not None:
            name, size = member
            match = _DATA_MEMBER.match(name)
            if not match:
                raise XvaError(f"unexpected member {name!r} (expected Ref:<n>/<8 digits>)")
            member_ref, n = match.group(1), int(match.group(2))
            if member_ref != ref:
                if ref is not None:
                    self._check_vdi_end(meta, ref, offset)
                if member_ref in seen:
                    raise XvaError(f"member {name!r}: VDI {member_ref} appears twice")
                if n != 0:
                    raise XvaError(f"member {name!r}: VDI {member_ref} does not start with "
                                   f"chunk 00000000")
                seen.add(member_ref)
                ref, last_n, offset = member_ref, -1, 0
                first_len = size
            elif n <= last_n:
                raise XvaError(f"member {name!r}: chunk numbers must increase "
                               f"(previous {last_n:08d})")
            offset += (n - last_n - 1) * first_len
            data = self._read_payload(name, size)
            self._check_sum(name, data)
            if size:
                yield member_ref, offset, data
            offset += size
            last_n = n
        if ref is not None:
            self._check_vdi_end(meta, ref, offset)
        missing = [d.ref for d in meta.disks() if d.ref not in seen]
        if missing:
            raise XvaError(f"the stream has no blocks for VDI(s) {missing} named in ova.xml")

    def _check_sum(self, data_name: str, data: bytes) -> None:
        member = self._next_member()
        if member is None:
            raise XvaError(f"member {data_name!r} has no checksum member (stream ended)")
        name, size = member
        match = _CHECKSUM_MEMBER.match(name)
        if not match or name.rsplit(".", 1)[0] != data_name:
            raise XvaError(f"member {data_name!r} is followed by {name!r}, not its checksum")
        expected = self._read_payload(name, size).decode("ascii", "replace")
        if self._verify:
            actual = _CHECKSUMS[match.group(3)](data)
            if actual != expected:
                raise XvaError(f"checksum mismatch in member {data_name!r}: {name} says "
                               f"{expected!r}, data hashes to {actual!r}")

    @staticmethod
    def _check_vdi_end(meta: OvaMetadata, ref: str, offset: int) -> None:
        rec = meta.record(ref)
        if rec is None:
            raise XvaError(f"stream has blocks for {ref}, which ova.xml does not describe")
        if offset != int(rec["virtual_size"]):
            raise XvaError(f"VDI {ref} ends at byte {offset} but its virtual_size is "
                           f"{rec['virtual_size']} (missing last chunk?)")


# --------------------------------------------------------------------------- writer

def _chunks_of(ref: str, virtual_size: int,
               pieces: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, bytes | memoryview]]:
    """Regroup (offset, data) pieces in increasing order into (chunk index, chunk data)."""
    current_index = None
    current = None
    end_of_last = 0
    for offset, data in pieces:
        view = memoryview(data).cast("B")
        if offset < end_of_last:
            raise ValueError(f"{ref}: piece at {offset} overlaps or is out of order")
        if offset + len(view) > virtual_size:
            raise ValueError(f"{ref}: piece at {offset} runs past virtual_size {virtual_size}")
        end_of_last = offset + len(view)
        while len(view):
            index, within = divmod(offset, CHUNK_SIZE)
            length = min(CHUNK_SIZE, virtual_size - index * CHUNK_SIZE)
            take = min(len(view), length - within)
            if index != current_index:
                if current is not None:
                    yield current_index, current
                current_index = index
                if within == 0 and take == length:
                    current = view[:take]
                else:
                    current = bytearray(length)
                    current[within : within + take] = view[:take]
            else:
                if not isinstance(current, bytearray):
                    current = bytearray(current)
                current[within : within + take] = view[:take]
            offset += take
            view = view[take:]
    if current is not None:
        yield current_index, current


class XvaWriter:
    """Rebuild an XVA stream the way xapi writes it, for ``PUT /import``."""

    def __init__(self, ova_xml: bytes, *, checksum: str = "xxhash", mtime: int | None = None):
        if checksum not in ("xxhash", "sha1"):
            raise ValueError(f"checksum must be 'xxhash' or 'sha1', not {checksum!r}")
        self._ova = ova_xml
        self._meta = parse_ova_xml(ova_xml)
        self._ext, self._hash = ("xxhash", xxhash_text) if checksum == "xxhash" \
            else ("checksum", sha1_text)
        self._mtime = int(time.time()) if mtime is None else mtime

    def stream(self, disks: list[tuple[str, int, Iterable[tuple[int, bytes]]]]
               ) -> Iterator[bytes]:
        """Yield the tar stream; disks are (ref, virtual_size, (offset, data) in order)."""
        for ref, virtual_size, _ in disks:
            if virtual_size % BLOCK:
                raise ValueError(f"{ref}: virtual_size {virtual_size} is not a multiple of 512 "
                                 "(xapi's importer would misparse the stream)")
            if self._meta.virtual_size(ref) != virtual_size:
                raise ValueError(f"{ref}: virtual_size {virtual_size} differs from ova.xml's "
                                 f"{self._meta.virtual_size(ref)}")
        yield _v7_header("ova.xml", len(self._ova), self._mtime) + self._ova \
            + bytes(_padding(len(self._ova)))
        for ref, virtual_size, pieces in sorted(disks, key=lambda d: d[0]):
            yield from self._disk(ref, virtual_size, pieces)
        yield bytes(2 * BLOCK)

    def _disk(self, ref: str, virtual_size: int, pieces) -> Iterator[bytes]:
        if virtual_size == 0:
            return
        last = (virtual_size - 1) // CHUNK_SIZE
        next_needed = 0  # chunk 0 must be written even when all zero
        for index, data in _chunks_of(ref, virtual_size, pieces):
            if next_needed == 0 and index > 0:
                yield self._member(ref, 0, _ZERO_CHUNK[: min(CHUNK_SIZE, virtual_size)])
            next_needed = None
            data = bytes(data)
            if index in (0, last) or data != _ZERO_CHUNK[: len(data)]:
                yield self._member(ref, index, data)
            if index == last:
                return
        if next_needed == 0:
            yield self._member(ref, 0, _ZERO_CHUNK[: min(CHUNK_SIZE, virtual_size)])
            if last == 0:
                return
        yield self._member(ref, last, _ZERO_CHUNK[: virtual_size - last * CHUNK_SIZE])

    def _member(self, ref: str, index: int, data: bytes) -> bytes:
        name = f"{ref}/{index:08d}"
        digest = self._hash(data).encode()
        return b"".join((
            _v7_header(name, len(data)), data, bytes(_padding(len(data))),
            _v7_header(f"{name}.{self._ext}", len(digest)), digest,
            bytes(_padding(len(digest))),
        ))
