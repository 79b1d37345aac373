"""Data stores as the console uses them: from a DataStore row to an open repository.

The console keeps each encrypted store's key, sealed with SESAM_SECRET_KEY, so that
scheduled backups and restores run unattended and workers never run scrypt. The
administrator's passphrase (which also wraps the key inside store.json) and the key file
they download once are the way back to the data if the console itself is lost.
"""
import threading
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import model_snapshot, record_event

from .choices import StoreKind
from .models import DataStore
from .repository import LocalBackend, Repository, RepositoryError, S3Backend
from .repository import keys as repository_keys
from .repository.chunks import DEFAULT_COMPRESSION_LEVEL

_open_repositories = {}
_open_lock = threading.Lock()


def backend_for(store: DataStore):
    if store.kind == StoreKind.S3:
        return S3Backend(
            endpoint_url=store.s3_endpoint, bucket=store.s3_bucket, prefix=store.s3_prefix,
            access_key=store.s3_access_key, secret_key=store.s3_secret(), region=store.s3_region or None,
        )
    return LocalBackend(store.path)


def create_store(*, name, kind=StoreKind.LOCAL, path="", passphrase=None, encrypted=True,
                 s3_endpoint="", s3_bucket="", s3_prefix="", s3_region="", s3_access_key="", s3_secret="",
                 chunk_size=None, compression_level=DEFAULT_COMPRESSION_LEVEL, cluster="", max_parallel_streams=2) -> DataStore:
    """Create the repository on the medium, then the DataStore row (audited).

    The repository is written first: if the medium is unusable nothing is saved; if saving
    the row fails the repository is left behind as an empty store that can be adopted.
    """
    store = DataStore(
        name=name, kind=kind, path=path, encrypted=encrypted, s3_endpoint=s3_endpoint,
        s3_bucket=s3_bucket, s3_prefix=s3_prefix, s3_region=s3_region, s3_access_key=s3_access_key,
        compression_level=compression_level, cluster=cluster, max_parallel_streams=max_parallel_streams,
    )
    if s3_secret:
        store.set_s3_secret(s3_secret)
    options = {"encryption": encrypted, "compression_level": compression_level}
    if chunk_size:
        options["chunk_size"] = chunk_size
    if encrypted:
        options["passphrase"] = passphrase
    if kind == StoreKind.LOCAL:
        _make_store_directory(path)
    repo = Repository.create(backend_for(store), **options)
    store.chunk_size = repo.chunk_size
    if encrypted:
        internal_key = repository_keys.make_key_file(repo.keys, repo.store_id, exported_at="")
        store.set_data_key(internal_key.decode())
    with transaction.atomic():
        store.save()
        record_event(AuditAction.CREATE, target=store, after=model_snapshot(store),
                     message=f"data store created at {store.location}")
    return store


def adopt_store(*, name, kind=StoreKind.LOCAL, path="", passphrase=None, key_file=None, key_file_passphrase=None,
                s3_endpoint="", s3_bucket="", s3_prefix="", s3_region="", s3_access_key="", s3_secret="",
                cluster="", max_parallel_streams=2) -> DataStore:
    """Register a data store that exists already (a console rebuilt without its database, a
    store moved to another console): opened with its passphrase or key file, which must fit
    before anything is saved; its restore points are then listed from its manifests (audited)."""
    store = DataStore(name=name, kind=kind, path=path, s3_endpoint=s3_endpoint, s3_bucket=s3_bucket,
                      s3_prefix=s3_prefix, s3_region=s3_region, s3_access_key=s3_access_key, cluster=cluster,
                      max_parallel_streams=max_parallel_streams)
    if s3_secret:
        store.set_s3_secret(s3_secret)
    if DataStore.objects.filter(path=path).exists() if kind == StoreKind.LOCAL else DataStore.objects.filter(
            s3_endpoint=s3_endpoint, s3_bucket=s3_bucket, s3_prefix=s3_prefix).exists():
        raise ValueError(f"another data store of this console uses {store.location} already")
    repo = Repository.open(backend_for(store), passphrase=passphrase, key_file=key_file,
                           key_file_passphrase=key_file_passphrase)
    store.encrypted = repo.is_encrypted
    store.chunk_size = repo.chunk_size
    store.compression_level = repo.config["compression"]["level"]
    if repo.is_encrypted:
        store.set_data_key(repository_keys.make_key_file(repo.keys, repo.store_id, exported_at="").decode())
        # The key file was kept somewhere (it opened the store), or the passphrase is known.
        store.key_exported_at = timezone.now() if key_file is not None else None
    with transaction.atomic():
        store.save()
        record_event(AuditAction.CREATE, target=store, after=model_snapshot(store),
                     message=f"existing data store at {store.location} adopted")
    from .maintenance import refresh_catalog

    refresh_catalog(store)
    return store


def _make_store_directory(path):
    """Create the store's own directory, never its parents: a missing parent usually means
    an NFS share that is not mounted, and writing backups onto the root disk instead would
    hide that until the disk is full."""
    directory = Path(path)
    if not directory.is_absolute():
        raise ValueError(f"the data store path must be absolute, not {path!r}")
    if not directory.parent.is_dir():
        raise ValueError(f"{directory.parent} does not exist (is the share mounted?)")
    directory.mkdir(exist_ok=True)


def open_repository(store: DataStore) -> Repository:
    """The store's repository, opened with the console's copy of its key (cached per process)."""
    cache_key = (store.pk, store.key_encrypted, store.path, store.s3_endpoint, store.s3_bucket, store.s3_prefix)
    with _open_lock:
        repo = _open_repositories.get(cache_key)
    if repo is not None:
        return repo
    key_text = store.data_key()
    repo = Repository.open(backend_for(store), key_file=key_text.encode() if key_text else None)
    with _open_lock:
        _open_repositories[cache_key] = repo
    return repo


def export_key_file(store: DataStore, *, passphrase=None, force=False) -> bytes:
    """The key file an administrator downloads once (force: again, deliberately). Audited."""
    repo = open_repository(store)
    key_file = repo.export_key_file(passphrase=passphrase, force=force)
    store.key_exported_at = timezone.now()
    store.save(update_fields=["key_exported_at"])
    record_event(AuditAction.KEY_EXPORT, target=store,
                 message="key file exported" + (" again (forced)" if force else "")
                 + (", protected by a passphrase" if passphrase else ""))
    return key_file


class StoreInUse(ValueError):
    """The data store cannot be forgotten or deleted now; the message says why."""


def update_store(store: DataStore, changes: dict, *, s3_secret="", user=None) -> DataStore:
    """Change a store's settings (not its medium or its key). Audited with before / after."""
    before = model_snapshot(DataStore.objects.get(pk=store.pk))
    for name, value in changes.items():
        setattr(store, name, value)
    if s3_secret:
        store.set_s3_secret(s3_secret)
    with transaction.atomic():
        store.save()
        record_event(AuditAction.UPDATE, target=store, actor=user, before=before, after=model_snapshot(store),
                     message=f"data store {store.name} changed")
    return store


def set_offline(store: DataStore, offline: bool, *, user=None) -> DataStore:
    """Offline: backups and maintenance to it are refused until it is back online. Audited."""
    before = model_snapshot(store)
    store.offline = offline
    with transaction.atomic():
        store.save(update_fields=["offline"])
        record_event(AuditAction.UPDATE, target=store, actor=user, before=before, after=model_snapshot(store),
                     message=f"data store {store.name} taken offline" if offline
                     else f"data store {store.name} back online")
    return store


def _refuse_if_used(store: DataStore, doing: str):
    from .choices import RunStatus
    from .models import VmBackup

    jobs = list(store.jobs.values_list("name", flat=True))
    if jobs:
        raise StoreInUse(f"{store.name} cannot be {doing}: backup job(s) {', '.join(jobs)} write to it; "
                         "move them to another data store or delete them first")
    if VmBackup.objects.filter(store=store, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exists():
        raise StoreInUse(f"{store.name} cannot be {doing}: a backup to it is queued or running")


def _drop(store: DataStore, *, user, message):
    from .maintenance import remove_maintenance_schedule

    before = model_snapshot(store)
    with transaction.atomic():
        for maintenance in list(store.maintenance_schedules.select_related("q_schedule")):
            remove_maintenance_schedule(maintenance, user=user)
        record_event(AuditAction.DELETE, target=store, actor=user, before=before, message=message)
        store.delete()      # its restore point index goes with it; run history keeps its rows


def forget_store(store: DataStore, *, user=None):
    """The console forgets the store: its restore points leave the index, its run history
    stays; the repository (backups, key) is left on the medium untouched, to be added again
    or read with its key file. Refused while jobs write to it or backups to it run. Audited."""
    _refuse_if_used(store, "forgotten")
    points = store.restore_points.count()
    _drop(store, user=user, message=f"data store {store.name} forgotten; its {points} restore point(s) and key "
                                    f"were left in place at {store.location}")


def delete_store(store: DataStore, *, user=None):
    """Delete an empty store: no restore point in the index nor in the repository. Its
    repository's own files (configuration, key, unreferenced chunks) are removed from the
    medium, the directory or bucket itself stays. Audited."""
    _refuse_if_used(store, "deleted")
    if store.restore_points.exists():
        raise StoreInUse(f"{store.name} is not empty: it holds {store.restore_points.count()} restore point(s); "
                         "prune them, or forget the store to leave them in place")
    try:
        repo = open_repository(store)
        left = repo.list_backups()
    except (RepositoryError, OSError) as exc:
        raise StoreInUse(f"{store.name} cannot be deleted: its repository could not be read ({exc}); "
                         "forget it instead to leave whatever is there in place") from None
    if left:
        raise StoreInUse(f"{store.name} is not empty: its repository holds {len(left)} restore point(s) the console "
                         "has not indexed (refresh the catalog); forget the store to leave them in place")
    for key in list(repo.backend.list("")):
        repo.backend.delete(key)
    with _open_lock:
        for cache_key in [k for k in _open_repositories if k[0] == store.pk]:
            _open_repositories.pop(cache_key)
    _drop(store, user=user, message=f"empty data store {store.name} deleted; its repository files at "
                                    f"{store.location} were removed")
