"""The sesamweb repository (data store) library: plain Python, no Django.

    repo = Repository.create(LocalBackend("/srv/store"), passphrase="...")
    repo = Repository.open(backend, passphrase="...")        # or key_file=bytes
    with repo.start_backup(vm_uuid, started_at, parent=None) as writer:
        dw = writer.add_disk("xvda", virtual_size, parent_chunks=None)
        dw.write(offset, data); dw.finish()
        writer.attach("ova.xml", xml); writer.set_metadata({...})
        manifest = writer.commit()
    repo.list_backups(), repo.open_disk(id, "xvda").stream(), repo.verify(),
    repo.prune(RetentionPolicy(...)), repo.collect_garbage()
"""
from .backends import Backend, LocalBackend, ObjectStat, S3Backend
from .errors import (
    BackupAbortedError,
    BackupExistsError,
    BackupNotFoundError,
    ChunkCorruptError,
    GarbageCollectionAbortedError,
    KeyAlreadyExportedError,
    LastGoodBackupError,
    ManifestCorruptError,
    ObjectNotFoundError,
    RepositoryError,
    StoreError,
    StoreExistsError,
    StoreFullError,
    StoreNotFoundError,
    StoreReadOnlyError,
    StoreUnavailableError,
    UnsupportedFormatError,
    WrongKeyError,
)
from .gc import GcReport, collect_garbage
from .leases import Lease
from .manifest import BackupSummary, DiskEntry, Manifest, restore_point_id
from .pipeline import BackupWriter, DiskWriter
from .prune import PrunePlan, RetentionPolicy, plan_prune, prune
from .reader import DiskReader
from .store import DEFAULT_CHUNK_SIZE, Repository
from .verify import BackupVerification, VerifyReport, verify

__all__ = [
    "Backend",
    "LocalBackend",
    "ObjectStat",
    "S3Backend",
    "BackupAbortedError",
    "BackupExistsError",
    "BackupNotFoundError",
    "ChunkCorruptError",
    "GarbageCollectionAbortedError",
    "KeyAlreadyExportedError",
    "LastGoodBackupError",
    "ManifestCorruptError",
    "ObjectNotFoundError",
    "RepositoryError",
    "StoreError",
    "StoreExistsError",
    "StoreFullError",
    "StoreNotFoundError",
    "StoreReadOnlyError",
    "StoreUnavailableError",
    "UnsupportedFormatError",
    "WrongKeyError",
    "GcReport",
    "collect_garbage",
    "Lease",
    "BackupSummary",
    "DiskEntry",
    "Manifest",
    "restore_point_id",
    "BackupWriter",
    "DiskWriter",
    "PrunePlan",
    "RetentionPolicy",
    "plan_prune",
    "prune",
    "DiskReader",
    "DEFAULT_CHUNK_SIZE",
    "Repository",
    "BackupVerification",
    "VerifyReport",
    "verify",
]
