"""Manifests: one per VM backup, at backups/<vm-uuid>/<timestamp>/manifest.

The manifest is JSON (VM metadata, attached files such as ova.xml, method, per-disk virtual
size and ordered chunk list, parent backup, totals, times) with a SHA-256 checksum of its
canonical form, compressed with zstd, and on an encrypted store sealed with AES-256-GCM under
the manifest key with the restore point id as associated data (a manifest cannot be moved to
another VM or time). A chunk list entry is the chunk id, or null for an all-zero chunk.

A backup exists only once its manifest exists; a `damaged` marker next to it is written by
verify.
"""
import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import BackupNotFoundError, ManifestCorruptError, ObjectNotFoundError

MAGIC = b"SWM"
VERSION = 1
FLAG_ENCRYPTED = 0x02
MANIFEST_FORMAT = 1
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_VM_UUID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_TIMESTAMP = re.compile(r"^\d{8}T\d{6}Z$")


def restore_point_id(vm_uuid: str, started_at: datetime) -> str:
    if not _VM_UUID.match(vm_uuid):
        raise ValueError(f"invalid VM uuid {vm_uuid!r}")
    if started_at.tzinfo is None:
        raise ValueError("started_at must be timezone-aware")
    return f"{vm_uuid}/{started_at.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)}"


def split_restore_point_id(rp_id: str) -> tuple[str, str]:
    vm_uuid, _, stamp = rp_id.partition("/")
    if not _VM_UUID.match(vm_uuid) or not _TIMESTAMP.match(stamp):
        raise BackupNotFoundError(f"invalid restore point id {rp_id!r}")
    return vm_uuid, stamp


def manifest_key(rp_id: str) -> str:
    split_restore_point_id(rp_id)
    return f"backups/{rp_id}/manifest"


def damaged_key(rp_id: str) -> str:
    split_restore_point_id(rp_id)
    return f"backups/{rp_id}/damaged"


@dataclass
class DiskEntry:
    key: str
    virtual_size: int
    chunk_size: int
    chunks: list  # chunk id (hex str) or None for an all-zero chunk

    def to_json(self):
        return {"key": self.key, "virtual_size": self.virtual_size,
                "chunk_size": self.chunk_size, "chunks": self.chunks}

    @classmethod
    def from_json(cls, d):
        return cls(d["key"], d["virtual_size"], d["chunk_size"], list(d["chunks"]))


@dataclass
class Manifest:
    id: str
    vm_uuid: str
    started_at: str
    finished_at: str
    method: str | None
    parent: str | None
    disks: list
    metadata: dict = field(default_factory=dict)
    attachments: dict = field(default_factory=dict)  # name -> bytes
    totals: dict = field(default_factory=dict)

    def disk(self, key) -> DiskEntry:
        for disk in self.disks:
            if disk.key == key:
                return disk
        raise KeyError(f"backup {self.id} has no disk {key!r}")

    def chunk_ids(self):
        """Every distinct chunk id the backup references."""
        return {cid for disk in self.disks for cid in disk.chunks if cid is not None}

    def to_json(self):
        body = {
            "format": MANIFEST_FORMAT,
            "id": self.id,
            "vm_uuid": self.vm_uuid,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "method": self.method,
            "parent": self.parent,
            "metadata": self.metadata,
            "attachments": {n: base64.b64encode(v).decode() for n, v in self.attachments.items()},
            "totals": self.totals,
            "disks": [d.to_json() for d in self.disks],
        }
        body["checksum"] = _checksum(body)
        return body

    @classmethod
    def from_json(cls, body):
        return cls(
            id=body["id"], vm_uuid=body["vm_uuid"], started_at=body["started_at"],
            finished_at=body["finished_at"], method=body.get("method"), parent=body.get("parent"),
            disks=[DiskEntry.from_json(d) for d in body["disks"]],
            metadata=body.get("metadata") or {},
            attachments={n: base64.b64decode(v)
                         for n, v in (body.get("attachments") or {}).items()},
            totals=body.get("totals") or {},
        )


def _checksum(body: dict) -> str:
    without = {k: v for k, v in body.items() if k != "checksum"}
    canonical = json.dumps(without, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def encode_manifest(manifest: Manifest, manifest_encryption_key: bytes | None) -> bytes:
    plain = zstandard.ZstdCompressor(level=3).compress(
        json.dumps(manifest.to_json(), separators=(",", ":")).encode())
    if manifest_encryption_key is None:
        return MAGIC + bytes((VERSION, 0)) + plain
    header = MAGIC + bytes((VERSION, FLAG_ENCRYPTED))
    nonce = os.urandom(12)
    sealed = AESGCM(manifest_encryption_key).encrypt(nonce, plain, header + manifest.id.encode())
    return header + nonce + sealed


def decode_manifest(rp_id: str, blob: bytes, manifest_encryption_key: bytes | None) -> Manifest:
    if len(blob) < 5 or blob[:3] != MAGIC or blob[3] != VERSION:
        raise ManifestCorruptError(rp_id, "bad header")
    header, flags = blob[:5], blob[4]
    try:
        if flags & FLAG_ENCRYPTED:
            if manifest_encryption_key is None:
                raise ManifestCorruptError(rp_id, "encrypted manifest in a plain store")
            plain = AESGCM(manifest_encryption_key).decrypt(blob[5:17], blob[17:],
                                                            header + rp_id.encode())
        else:
            if manifest_encryption_key is not None:
                raise ManifestCorruptError(rp_id, "unencrypted manifest in an encrypted store")
            plain = blob[5:]
        body = json.loads(zstandard.ZstdDecompressor().decompress(plain))
    except InvalidTag:
        raise ManifestCorruptError(rp_id, "authentication tag mismatch") from None
    except (zstandard.ZstdError, ValueError) as exc:
        raise ManifestCorruptError(rp_id, f"cannot decode: {exc}") from None
    if body.get("checksum") != _checksum(body):
        raise ManifestCorruptError(rp_id, "checksum mismatch")
    if body.get("id") != rp_id:
        raise ManifestCorruptError(rp_id, f"manifest claims to be {body.get('id')!r}")
    try:
        return Manifest.from_json(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestCorruptError(rp_id, f"missing field {exc}") from None


@dataclass
class BackupSummary:
    """What the console lists for one restore point, without reading any chunk."""

    id: str
    vm_uuid: str
    timestamp: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    method: str | None = None
    parent: str | None = None
    vm_name: str | None = None
    disks: dict = field(default_factory=dict)  # disk key -> virtual size
    totals: dict = field(default_factory=dict)
    damaged: dict | None = None  # the verify marker (time, damaged chunks) when damaged
    error: str | None = None  # set when the manifest is unreadable

    @property
    def is_good(self) -> bool:
        return self.error is None and self.damaged is None

    @property
    def status(self) -> str:
        if self.error:
            return "unreadable"
        return "damaged" if self.damaged else "ok"


def summarize(manifest: Manifest) -> BackupSummary:
    vm_uuid, stamp = split_restore_point_id(manifest.id)
    return BackupSummary(
        id=manifest.id, vm_uuid=vm_uuid, timestamp=stamp,
        started_at=datetime.fromisoformat(manifest.started_at),
        finished_at=datetime.fromisoformat(manifest.finished_at),
        method=manifest.method, parent=manifest.parent,
        vm_name=(manifest.metadata.get("vm") or {}).get("name_label")
        if isinstance(manifest.metadata.get("vm"), dict) else manifest.metadata.get("vm_name"),
        disks={d.key: d.virtual_size for d in manifest.disks},
        totals=dict(manifest.totals),
    )


def list_backup_ids(backend, vm_uuid=None):
    """Restore point ids that have a manifest, sorted by VM then time; damaged markers found."""
    prefix = f"backups/{vm_uuid}/" if vm_uuid else "backups/"
    manifests, damaged = set(), set()
    for key in backend.list(prefix):
        parts = key.split("/")
        if len(parts) != 4:
            continue
        rp_id = f"{parts[1]}/{parts[2]}"
        if parts[3] == "manifest":
            manifests.add(rp_id)
        elif parts[3] == "damaged":
            damaged.add(rp_id)
    return sorted(manifests), damaged


def read_damaged_marker(backend, rp_id):
    try:
        return json.loads(backend.get(damaged_key(rp_id)))
    except ObjectNotFoundError:
        return None
    except ValueError:
        return {"reason": "unreadable damaged marker"}
