"""Storage backends: a local (or NFS-mounted) directory and an S3-compatible bucket.

Both expose the same small set of operations on slash-separated keys ("store.json",
"chunks/ab/cd/<id>", "backups/<vm>/<timestamp>/manifest"), so the store layout is identical.
Every OS or S3 failure is mapped to a RepositoryError subclass naming the store location.
"""
import errno
import fcntl
import mmap
import os
import secrets
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from .errors import (
    ObjectNotFoundError,
    StoreFullError,
    StoreReadOnlyError,
    StoreUnavailableError,
)

# Temporary files of an unfinished atomic write carry this marker; gc removes old ones.
TEMP_MARKER = ".tmp-"
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
# Objects from this size up are written with O_DIRECT (see LocalBackend._write_new).
DIRECT_IO_MIN_SIZE = 64 * 1024
DIRECT_IO_ALIGNMENT = 4096  # a multiple of every device's logical block size


@dataclass(frozen=True)
class ObjectStat:
    size: int
    mtime: float  # seconds since the epoch


class Backend(Protocol):
    location: str
    remote: bool  # every call is a network round trip (S3); False for a mounted directory
    parallelism: int  # how many chunk writes (or reads) a backup (or restore) keeps going

    def get(self, key: str) -> bytes: ...

    def put_atomic(self, key: str, data: bytes, *, overwrite: bool = True) -> bool:
        """Store data under key so readers see all of it or nothing. Returns False when
        overwrite is False and the key already existed (nothing written)."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def delete(self, key: str) -> None: ...

    def stat(self, key: str) -> ObjectStat: ...

    def touch(self, key: str) -> None:
        """Refresh the modification time (gc's age cutoff protects recently used chunks)."""

    def flush(self) -> None:
        """Make everything written so far durable (before a manifest is written)."""

    def free_space(self) -> int | None: ...


def is_temporary(key: str) -> bool:
    return TEMP_MARKER in key.rsplit("/", 1)[-1]


class LocalBackend:
    """A directory on a local or network file system.

    Chunks are written with O_DIRECT where the file system allows it: backup data is written
    once and not read back soon, so it should not push the host's working set out of the
    page cache. It is also cheaper: copying into fresh page-cache pages was the second
    largest CPU cost of a backup worker (after zstd), and more so on a virtual machine whose
    hypervisor takes freed guest pages back. File systems without O_DIRECT (tmpfs, some
    FUSE mounts) get ordinary buffered writes."""

    remote = False
    parallelism = 4  # mostly waiting for fsync; more only adds seeks

    def __init__(self, path, *, direct_io=True):
        self.root = Path(path)
        self.location = str(self.root)
        self._dirs_to_sync = set()
        self._lock = threading.Lock()
        self._direct_io = direct_io and hasattr(os, "O_DIRECT")
        self._buffers = threading.local()  # one aligned buffer per writing thread

    # -- error mapping -------------------------------------------------------------
    def _error(self, exc: OSError, key: str, writing: bool):
        code = exc.errno
        what = f"{'writing' if writing else 'reading'} {key}: {exc.strerror or exc}"
        if code in (errno.ENOSPC, errno.EDQUOT):
            return StoreFullError(self.location, f"no space left {what}")
        if code in (errno.EROFS,) or (writing and code in (errno.EACCES, errno.EPERM)):
            return StoreReadOnlyError(self.location, f"store is not writable, {what}")
        if code == errno.ENOENT and not self.root.is_dir():
            return StoreUnavailableError(
                self.location, "data store directory does not exist (not mounted?)"
            )
        if code == errno.ENOENT:
            return ObjectNotFoundError(self.location, f"{key} does not exist")
        return StoreUnavailableError(self.location, what)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid store key {key!r}")
        return self.root / key

    def _check_root(self):
        if not self.root.is_dir():
            raise StoreUnavailableError(
                self.location, "data store directory does not exist (not mounted?)"
            )

    # -- operations ------------------------------------------------------------------
    def get(self, key):
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise self._error(exc, key, writing=False) from exc

    def put_atomic(self, key, data, *, overwrite=True):
        self._check_root()
        path = self._path(key)
        tmp = path.with_name(path.name + TEMP_MARKER + secrets.token_hex(6))
        try:
            self._write_new(tmp, data)
            if overwrite:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)  # fails instead of replacing: chunks are never rewritten
                except FileExistsError:
                    return False
                except OSError as exc:
                    if exc.errno not in NO_HARD_LINKS:
                        raise
                    # A file system without hard links (some FUSE/SMB mounts): check, then
                    # rename. Two writers of one chunk id write the same content anyway.
                    if path.exists():
                        return False
                    os.replace(tmp, path)
                finally:
                    if tmp.exists():
                        os.unlink(tmp)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise self._error(exc, key, writing=True) from exc
        with self._lock:
            self._dirs_to_sync.add(path.parent)
        return True

    def _write_new(self, tmp: Path, data):
        """Create tmp with data, durably (fsync)."""
        length = len(data)
        direct = self._direct_io and length >= DIRECT_IO_MIN_SIZE
        fd = self._create(tmp, direct)
        try:
            if direct:
                try:
                    self._write_direct(fd, data, length)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    # Accepted at open, refused at write (some network file systems): the
                    # same file, without O_DIRECT, from the start.
                    self._direct_io = False
                    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    self._write_all(fd, memoryview(data))
            else:
                self._write_all(fd, memoryview(data))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_direct(self, fd, data, length):
        """Write through an aligned buffer, padded to whole blocks, then cut to length."""
        padded = -(-length // DIRECT_IO_ALIGNMENT) * DIRECT_IO_ALIGNMENT
        buffer = getattr(self._buffers, "buffer", None)
        if buffer is None or len(buffer) < padded:
            buffer = self._buffers.buffer = mmap.mmap(-1, padded)  # page-aligned
        buffer[:length] = data
        buffer[length:padded] = bytes(padded - length)
        self._write_all(fd, memoryview(buffer)[:padded])
        os.ftruncate(fd, length)

    @staticmethod
    def _write_all(fd, view):
        while view:
            view = view[os.write(fd, view):]

    def _create(self, tmp: Path, direct=False) -> int:
        """Open a new file, creating its directories on first use (one failed open per new
        fan-out directory is cheaper than a mkdir call for every chunk)."""
        try:
            return self._open_new(tmp, direct)
        except FileNotFoundError:
            pass
        directory = tmp.parent
        new_dirs = []
        while not directory.is_dir() and directory != self.root:
            new_dirs.append(directory)
            directory = directory.parent
        self._check_root()  # never recreate the store's own directory (an unmounted share)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:  # a new directory is durable once the entry in its parent is
            self._dirs_to_sync.update(d.parent for d in new_dirs)
        return self._open_new(tmp, direct)

    def _open_new(self, tmp: Path, direct) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        if direct:
            try:
                return os.open(tmp, flags | os.O_DIRECT, 0o666)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct_io = False  # this file system has no O_DIRECT
                try:  # some kernels refuse O_DIRECT only after creating the file
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
        return os.open(tmp, flags, 0o666)

    def exists(self, key):
        try:
            self._path(key).stat()
            return True
        except FileNotFoundError:
            self._check_root()
            return False
        except OSError as exc:
            raise self._error(exc, key, writing=False) from exc

    def list(self, prefix=""):
        self._check_root()
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return
        try:
            for dirpath, _dirnames, filenames in os.walk(base, onerror=_raise):
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for name in sorted(filenames):
                    yield name if rel == "." else f"{rel}/{name}"
        except OSError as exc:
            raise self._error(exc, prefix, writing=False) from exc

    def delete(self, key):
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._error(exc, key, writing=True) from exc
        # Remove the directories of a deleted backup (backups/<vm>/<ts>/) once empty. Chunk
        # fan-out directories stay: a writer may be creating a file in one right now.
        if not key.startswith("backups/"):
            return
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def stat(self, key):
        try:
            st = self._path(key).stat()
        except OSError as exc:
            raise self._error(exc, key, writing=False) from exc
        return ObjectStat(size=st.st_size, mtime=st.st_mtime)

    def touch(self, key):
        try:
            os.utime(self._path(key))
        except OSError as exc:
            raise self._error(exc, key, writing=True) from exc

    def flush(self):
        with self._lock:
            dirs, self._dirs_to_sync = self._dirs_to_sync, set()
        if not dirs:
            return
        # One fsync per directory that gained a chunk: thousands on a large first backup,
        # each mostly a wait for the disk, so several at once.
        with ThreadPoolExecutor(max_workers=min(8, len(dirs)), thread_name_prefix="dir-sync") as pool:
            for _ in pool.map(self._sync_directory, dirs):
                pass

    def _sync_directory(self, directory):
        try:
            try:
                fd = os.open(directory, os.O_RDONLY)
            except FileNotFoundError:
                return  # emptied and removed meanwhile: nothing left to make durable
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._error(exc, str(directory), writing=True) from exc

    def free_space(self):
        try:
            return shutil.disk_usage(self.root).free
        except OSError:
            return None


def _raise(exc):
    if isinstance(exc, FileNotFoundError):
        return  # a directory removed while listing (a pruned backup): nothing to list there
    raise exc


class S3Backend:
    """An S3-compatible bucket (AWS, MinIO, Ceph RGW, moto in tests) accessed with boto3."""

    remote = True
    # Requests in flight: each chunk is one PUT or GET of about a chunk's size, so one
    # connection's throughput is bounded by its round trips, not by bandwidth. Against a
    # local server (bench/s3_throughput.py, 2 cores) 8 was as fast as 12 or 16 and kept the
    # worker's peak RSS 15-25 MiB lower (each thread's freed buffers stay in its arena);
    # a distant endpoint may want more: S3Backend(parallelism=16).
    parallelism = 8
    FULL_CODES = {"QuotaExceeded", "XMinioStorageFull", "StorageFull", "InsufficientStorage"}
    DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId",
                    "SignatureDoesNotMatch"}
    MISSING_CODES = {"NoSuchKey", "404", "NotFound"}

    def __init__(self, endpoint_url, bucket, prefix="", access_key=None, secret_key=None,
                 region="us-east-1", connect_timeout=5, read_timeout=60, parallelism=None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        if parallelism:
            self.parallelism = parallelism
        self._conditional_puts = True
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.location = f"s3://{bucket}/{self.prefix} at {endpoint_url}"
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": 3, "mode": "standard"},
                # One client for every thread, with a connection for each request in
                # flight (a backup's or a restore's, plus leases and listing).
                max_pool_connections=self.parallelism + 4,
            ),
        )

    def _error(self, exc, key, writing):
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            message = exc.response.get("Error", {}).get("Message", "") or code
            if code == "NoSuchBucket":
                return StoreUnavailableError(self.location, f"bucket {self.bucket} does not exist")
            if code in self.MISSING_CODES:
                return ObjectNotFoundError(self.location, f"{key} does not exist")
            if code in self.FULL_CODES:
                return StoreFullError(self.location, f"storage full writing {key}: {message}")
            if code in self.DENIED_CODES or code == "403":
                if writing:
                    return StoreReadOnlyError(self.location, f"access denied writing {key}")
                return StoreUnavailableError(self.location, f"access denied reading {key}")
            return StoreUnavailableError(self.location, f"S3 error {code} on {key}: {message}")
        if isinstance(exc, BotoCoreError):
            return StoreUnavailableError(self.location, f"S3 endpoint unreachable: {exc}")
        return exc

    def _call(self, key, writing, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, key, writing) from exc

    def get(self, key):
        response = self._call(key, False, self.client.get_object, Key=self.prefix + key)
        return response["Body"].read()

    def put_atomic(self, key, data, *, overwrite=True):
        # A single PUT is atomic on S3: readers see the old object, or all of the new one.
        # Without overwrite, a conditional PUT (If-None-Match: *) lets the server refuse an
        # existing key; servers without conditional writes get a check-then-put.
        from botocore.exceptions import ClientError

        if overwrite or not self._conditional_puts:
            if not overwrite and self.exists(key):
                return False
            self._call(key, True, self.client.put_object, Key=self.prefix + key, Body=data)
            return True
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data,
                                   IfNoneMatch="*")
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            if code in ("NotImplemented", "501"):
                self._conditional_puts = False
                return self.put_atomic(key, data, overwrite=False)
            raise self._error(exc, key, True) from exc
        except Exception as exc:
            mapped = self._error(exc, key, True)
            if mapped is exc:
                raise
            raise mapped from exc

    def exists(self, key):
        try:
            self.stat(key)
            return True
        except ObjectNotFoundError:
            return False

    def list(self, prefix=""):
        paginator = self.client.get_paginator("list_objects_v2")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix):]
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, prefix, False) from exc

    def delete(self, key):
        self._call(key, True, self.client.delete_object, Key=self.prefix + key)

    def stat(self, key):
        response = self._call(key, False, self.client.head_object, Key=self.prefix + key)
        return ObjectStat(size=response["ContentLength"],
                          mtime=response["LastModified"].timestamp())

    def touch(self, key):
        # Copying an object onto itself with new metadata refreshes LastModified.
        self._call(
            key, True, self.client.copy_object,
            Key=self.prefix + key,
            CopySource={"Bucket": self.bucket, "Key": self.prefix + key},
            MetadataDirective="REPLACE",
            Metadata={"touched": "1"},
        )

    def flush(self):
        pass  # a completed PUT is durable

    def free_space(self):
        return None

    def check_bucket(self):
        self._call("", False, self.client.head_bucket)
