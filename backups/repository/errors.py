"""Exceptions raised by the repository library.

Every error about the store names its location, so a message shown in the console or a log
says which data store is affected without further context.
"""


class RepositoryError(Exception):
    """Base class of every error raised by backups.repository."""


class StoreError(RepositoryError):
    """A problem with the data store itself (the directory or the bucket)."""

    def __init__(self, location, detail):
        self.location = location
        self.detail = detail
        super().__init__(f"{detail} (data store {location})")


class StoreNotFoundError(StoreError):
    """There is no readable store.json at the location: not a data store (yet)."""


class StoreExistsError(StoreError):
    """create() was called on a location that already holds a data store."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached: directory gone or not mounted, endpoint down, bucket missing."""


class StoreFullError(StoreError):
    """The store ran out of space or quota (ENOSPC, EDQUOT, S3 quota)."""


class StoreReadOnlyError(StoreError):
    """The store refuses writes (read-only file system, no permission, S3 access denied)."""


class ObjectNotFoundError(StoreError):
    """A single object (chunk, manifest, lease) is missing from an otherwise reachable store."""


class UnsupportedFormatError(StoreError):
    """store.json declares a format version or algorithm this code does not know."""


class WrongKeyError(RepositoryError):
    """The passphrase or key file does not open this store (or none was given)."""


class KeyAlreadyExportedError(RepositoryError):
    """The key file was exported before; a further export needs force=True (administrator)."""

    def __init__(self, exported_at):
        self.exported_at = exported_at
        super().__init__(
            f"the key file of this data store was already exported on {exported_at}; "
            "an administrator can force a new export"
        )


class ChunkCorruptError(RepositoryError):
    """A chunk failed its authentication tag, decompression or id check."""

    def __init__(self, chunk_id, reason):
        self.chunk_id = chunk_id
        self.reason = reason
        super().__init__(f"chunk {chunk_id} is damaged: {reason}")


class ManifestCorruptError(RepositoryError):
    """A manifest cannot be decrypted, decoded or fails its checksum."""

    def __init__(self, restore_point_id, reason):
        self.restore_point_id = restore_point_id
        self.reason = reason
        super().__init__(f"manifest of backup {restore_point_id} is unreadable: {reason}")


class BackupNotFoundError(RepositoryError):
    """No manifest exists for the restore point id."""


class BackupExistsError(RepositoryError):
    """A manifest already exists for this VM and timestamp; manifests are never overwritten."""


class BackupAbortedError(RepositoryError):
    """The backup writer was used after it failed or was closed."""


class LastGoodBackupError(RepositoryError):
    """Deleting would remove the only good backup of a VM; needs confirm_last=True."""


class GarbageCollectionAbortedError(RepositoryError):
    """GC stopped before deleting anything because it could not read every manifest."""
