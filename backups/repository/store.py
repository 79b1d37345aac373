"""store.json and the Repository object (create / open a data store).

store.json (plain JSON, no secrets in clear):
    format, version, store_id, created_at, chunk_size,
    compression {algorithm: zstd, level},
    chunk_id (blake3-keyed | blake3; older stores: hmac-sha256 | sha256, see chunks.py),
    encryption {algorithm: none | aes-256-gcm, key_id, kdf {scrypt n r p salt}, nonce, wrapped_key},
    key_exported_at (null until the key file was exported)
"""
import json
import uuid
from datetime import datetime, timezone

from . import keys as keys_module
from .gc import collect_garbage
from .backends import is_temporary
from .chunks import CHUNK_ID_ALGORITHMS, DEFAULT_CHUNK_ID, DEFAULT_COMPRESSION_LEVEL, ChunkCodec, chunk_key
from .errors import (
    BackupNotFoundError,
    KeyAlreadyExportedError,
    LastGoodBackupError,
    ManifestCorruptError,
    ObjectNotFoundError,
    StoreExistsError,
    StoreNotFoundError,
    UnsupportedFormatError,
    WrongKeyError,
)
from .leases import list_leases
from .prune import prune
from .manifest import (
    damaged_key,
    decode_manifest,
    list_backup_ids,
    manifest_key,
    read_damaged_marker,
    summarize,
    BackupSummary,
    split_restore_point_id,
)
from .verify import verify

STORE_FILE = "store.json"
STORE_FORMAT = "sesamweb-store"
FORMAT_VERSION = 1
# 1 MiB: bench/chunk_size.py measured the day-2 growth of a scattered 2 % change of 64 KiB
# blocks on a 1 GiB disk at 120 MB with 1 MiB chunks against 291 MB with 4 MiB (2.4x).
DEFAULT_CHUNK_SIZE = 1 << 20
ALLOWED_CHUNK_SIZES = {1 << n for n in range(16, 25)}  # 64 KiB .. 16 MiB


def _now_iso():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Repository:
    """An opened data store. Thread-safe for reading; one BackupWriter per backup."""

    def __init__(self, backend, config: dict, keys=None):
        self.backend = backend
        self.config = config
        self.keys = keys
        self.codec = ChunkCodec(
            chunk_size=config["chunk_size"],
            compression_level=config["compression"]["level"],
            keys=keys,
            chunk_id_algorithm=chunk_id_algorithm(config),
        )

    # -- create / open -----------------------------------------------------------------
    @classmethod
    def create(cls, backend, *, passphrase=None, encryption=True,
               chunk_size=DEFAULT_CHUNK_SIZE, compression_level=DEFAULT_COMPRESSION_LEVEL,
               scrypt_n=keys_module.DEFAULT_SCRYPT_N) -> "Repository":
        if chunk_size not in ALLOWED_CHUNK_SIZES:
            raise ValueError("chunk size must be a power of two between 64 KiB and 16 MiB")
        if not 1 <= compression_level <= 22:
            raise ValueError("zstd level must be between 1 and 22")
        if encryption and not passphrase:
            raise ValueError("an encrypted data store needs a passphrase")
        if passphrase and not encryption:
            raise ValueError("a passphrase was given for a store without encryption")
        if backend.exists(STORE_FILE):
            raise StoreExistsError(backend.location, "a data store already exists here")
        config = {
            "format": STORE_FORMAT,
            "version": FORMAT_VERSION,
            "store_id": str(uuid.uuid4()),
            "created_at": _now_iso(),
            "chunk_size": chunk_size,
            "compression": {"algorithm": "zstd", "level": compression_level},
            "chunk_id": DEFAULT_CHUNK_ID[encryption],
            "encryption": {"algorithm": "none"},
            "key_exported_at": None,
        }
        data_keys = None
        if encryption:
            data_keys = keys_module.DataKeys.generate()
            config["encryption"] = {
                "algorithm": "aes-256-gcm",
                "key_id": data_keys.key_id,
                **keys_module.wrap_master_key(data_keys.master, passphrase, scrypt_n=scrypt_n),
            }
        backend.put_atomic(STORE_FILE, _dump(config), overwrite=False) or _raise_exists(backend)
        return cls(backend, config, data_keys)

    @classmethod
    def open(cls, backend, *, passphrase=None, key_file=None, key_file_passphrase=None):
        """Open a store; a wrong or missing key raises WrongKeyError before anything is written."""
        config = read_store_config(backend)
        encryption = config["encryption"]
        if encryption["algorithm"] == "none":
            return cls(backend, config, None)
        if encryption["algorithm"] != "aes-256-gcm":
            raise UnsupportedFormatError(backend.location,
                                         f"unknown encryption {encryption['algorithm']!r}")
        if key_file is not None:
            data_keys = keys_module.read_key_file(key_file, key_file_passphrase)
        elif passphrase:
            data_keys = keys_module.DataKeys.from_master(
                keys_module.unwrap_master_key(encryption, passphrase))
        else:
            raise WrongKeyError("this data store is encrypted: give its passphrase or key file")
        if data_keys.key_id != encryption["key_id"]:
            raise WrongKeyError("the key file belongs to another data store")
        return cls(backend, config, data_keys)

    # -- properties ------------------------------------------------------------------------
    @property
    def location(self):
        return self.backend.location

    @property
    def store_id(self):
        return self.config["store_id"]

    @property
    def chunk_size(self):
        return self.config["chunk_size"]

    @property
    def is_encrypted(self):
        return self.keys is not None

    @property
    def key_exported_at(self):
        return self.config.get("key_exported_at")

    # -- keys ----------------------------------------------------------------------------
    def export_key_file(self, *, force=False, passphrase=None,
                        scrypt_n=keys_module.DEFAULT_SCRYPT_N) -> bytes:
        """The key file (JSON). Allowed once; force=True is for an administrator. With
        passphrase, the file is protected by it; without, it holds the raw master key."""
        if not self.is_encrypted:
            raise WrongKeyError("this data store is not encrypted: it has no key to export")
        if self.key_exported_at and not force:
            raise KeyAlreadyExportedError(self.key_exported_at)
        exported_at = _now_iso()
        key_file = keys_module.make_key_file(self.keys, self.store_id, exported_at, passphrase,
                                             scrypt_n=scrypt_n)
        config = dict(self.config, key_exported_at=exported_at)
        self.backend.put_atomic(STORE_FILE, _dump(config))
        self.config = config
        return key_file

    def change_passphrase(self, new_passphrase, *, scrypt_n=keys_module.DEFAULT_SCRYPT_N):
        if not self.is_encrypted:
            raise WrongKeyError("this data store is not encrypted")
        encryption = dict(self.config["encryption"],
                          **keys_module.wrap_master_key(self.keys.master, new_passphrase,
                                                        scrypt_n=scrypt_n))
        config = dict(self.config, encryption=encryption)
        self.backend.put_atomic(STORE_FILE, _dump(config))
        self.config = config

    # -- backups ---------------------------------------------------------------------------
    def start_backup(self, vm_uuid, started_at, *, parent=None, method=None,
                     on_progress=None, max_in_flight=None, workers=None, store_workers=None,
                     lease_refresh=60.0):
        """In-flight chunks and store threads default to the backend's parallelism."""
        from .pipeline import BackupWriter

        return BackupWriter(self, vm_uuid, started_at, parent=parent, method=method,
                            on_progress=on_progress, max_in_flight=max_in_flight,
                            workers=workers, store_workers=store_workers,
                            lease_refresh=lease_refresh)

    def load_manifest(self, rp_id):
        try:
            blob = self.backend.get(manifest_key(rp_id))
        except ObjectNotFoundError:
            raise BackupNotFoundError(f"no backup {rp_id} in {self.location}") from None
        return decode_manifest(rp_id, blob, self.keys.manifest_encryption if self.keys else None)

    def list_backups(self, vm_uuid=None) -> list[BackupSummary]:
        """Every restore point (oldest first per VM); unreadable manifests are listed with
        .error set, damaged ones with .damaged set."""
        ids, damaged = list_backup_ids(self.backend, vm_uuid)
        summaries = []
        for rp_id in ids:
            try:
                summary = summarize(self.load_manifest(rp_id))
            except ManifestCorruptError as exc:
                vm, stamp = split_restore_point_id(rp_id)
                summary = BackupSummary(id=rp_id, vm_uuid=vm, timestamp=stamp, error=exc.reason)
            if rp_id in damaged:
                summary.damaged = read_damaged_marker(self.backend, rp_id) or {}
            summaries.append(summary)
        return summaries

    def open_disk(self, rp_id, disk_key, *, read_ahead=None, workers=None):
        """A DiskReader; fetch threads and read-ahead default to the backend's parallelism
        on a remote store (2 threads on a directory, where reading is not round trips)."""
        from .reader import DiskReader

        manifest = self.load_manifest(rp_id)
        return DiskReader(self, manifest.disk(disk_key), read_ahead=read_ahead, workers=workers)

    def read_chunk(self, chunk_id) -> bytes:
        return self.decode_chunk(chunk_id, self.fetch_chunk(chunk_id))

    def fetch_chunk(self, chunk_id) -> bytes:
        """The stored (encoded) chunk: I/O only."""
        return self.backend.get(chunk_key(chunk_id))

    def decode_chunk(self, chunk_id, blob) -> bytes:
        """Plaintext of a fetched chunk, its tag, decompression and id checked: CPU only."""
        return self.codec.decode(chunk_id, blob)

    def running_backups(self, **kwargs):
        return list_leases(self.backend, **kwargs)

    def delete_backup(self, rp_id, *, confirm_last=False):
        """Delete one restore point (its chunks are reclaimed by gc)."""
        vm_uuid, _ = split_restore_point_id(rp_id)
        summaries = self.list_backups(vm_uuid)
        target = next((s for s in summaries if s.id == rp_id), None)
        if target is None:
            raise BackupNotFoundError(f"no backup {rp_id} in {self.location}")
        others_good = [s for s in summaries if s.is_good and s.id != rp_id]
        if target.is_good and not others_good and not confirm_last:
            raise LastGoodBackupError(f"{rp_id} is the only good backup of VM {vm_uuid}")
        for lease in self.running_backups():
            if lease.parent == rp_id:
                raise LastGoodBackupError(f"{rp_id} is the parent of a running backup")
        self.backend.delete(manifest_key(rp_id))
        self.backend.delete(damaged_key(rp_id))

    def usage(self) -> dict:
        """Stored chunk count and bytes (one listing and a stat per chunk: a maintenance
        call, not for every page view), plus free space when the backend knows it."""
        chunks = stored = 0
        for key in self.backend.list("chunks/"):
            if not is_temporary(key):
                chunks += 1
                stored += self.backend.stat(key).size
        return {"chunks": chunks, "chunk_bytes": stored, "free_bytes": self.backend.free_space()}

    # -- maintenance -----------------------------------------------------------------------
    def verify(self, rp_ids=None, **kwargs):
        return verify(self, rp_ids, **kwargs)

    def collect_garbage(self, **kwargs):
        return collect_garbage(self, **kwargs)

    def prune(self, policy, **kwargs):
        return prune(self, policy, **kwargs)


def read_store_config(backend) -> dict:
    try:
        config = json.loads(backend.get(STORE_FILE))
    except ObjectNotFoundError:
        raise StoreNotFoundError(backend.location,
                                 "no store.json: not a sesamweb data store") from None
    except ValueError as exc:
        raise StoreNotFoundError(backend.location, f"store.json is unreadable: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != STORE_FORMAT:
        raise StoreNotFoundError(backend.location, "store.json is not a sesamweb data store")
    if config.get("version") != FORMAT_VERSION:
        raise UnsupportedFormatError(
            backend.location, f"store format version {config.get('version')} is not supported")
    encrypted = config.get("encryption", {}).get("algorithm", "none") != "none"
    if chunk_id_algorithm(config) not in CHUNK_ID_ALGORITHMS[encrypted]:
        raise UnsupportedFormatError(
            backend.location, f"unknown chunk id algorithm {chunk_id_algorithm(config)!r}")
    return config


def chunk_id_algorithm(config) -> str:
    """How the store names its chunks. Stores made before BLAKE3 recorded HMAC-SHA256 inside
    "encryption" and SHA-256 at the top level."""
    return config.get("chunk_id") or config.get("encryption", {}).get("chunk_id") or "sha256"


def _dump(config):
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()


def _raise_exists(backend):
    raise StoreExistsError(backend.location, "a data store already exists here")
