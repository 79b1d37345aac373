"""The S3 backend against a real S3-speaking server on loopback (moto in server mode)."""
import os
import socket
import threading
import time
from datetime import datetime, timezone

import pytest

from backups.repository import (
    ObjectNotFoundError,
    Repository,
    S3Backend,
    StoreNotFoundError,
    StoreUnavailableError,
    WrongKeyError,
)
from backups.repository.prune import forget

from .conftest import CHUNK, PASSPHRASE, TEST_SCRYPT_N
from .diskdata import mixed_disk, read_disk, write_disk

try:
    from moto import server as moto_server
except ImportError:  # skipped locally, a failure under CI=true
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("moto[server] is not installed", allow_module_level=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint, request):
    name = "store-" + request.node.name.replace("_", "-")[:40].lower().strip("-")
    backend = S3Backend(s3_endpoint, name, "", "testing", "testing")
    backend.client.create_bucket(Bucket=name)
    return name


def backend_for(endpoint, bucket, prefix="sesam/site1"):
    return S3Backend(endpoint, bucket, prefix, access_key="testing", secret_key="testing")


def test_s3_round_trip_verify_and_gc(s3_endpoint, bucket):
    backend = backend_for(s3_endpoint, bucket)
    repo = Repository.create(backend, passphrase=PASSPHRASE, scrypt_n=TEST_SCRYPT_N,
                             chunk_size=CHUNK)
    data = mixed_disk(9 * CHUNK + 100, CHUNK, seed=11)
    with repo.start_backup("vm-a", datetime.now(timezone.utc)) as writer:
        write_disk(writer, "xvda", data)
        writer.attach("ova.xml", b"<vm/>")
        manifest = writer.commit()
    keys = list(backend.list())
    assert "store.json" in keys and f"backups/{manifest.id}/manifest" in keys
    assert all(k.startswith(("store.json", "chunks/", "backups/", "gc.json")) for k in keys)
    raw_keys = [o["Key"] for o in backend.client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(k.startswith("sesam/site1/") for k in raw_keys)

    reopened = Repository.open(backend_for(s3_endpoint, bucket), passphrase=PASSPHRASE)
    assert read_disk(reopened, manifest.id, "xvda") == data
    assert [s.id for s in reopened.list_backups()] == [manifest.id]
    assert reopened.verify().ok

    # A failed backup removes its own new chunks at once; the orphans of a pruned one are
    # collected by gc; the committed backup stays intact.
    with pytest.raises(RuntimeError):
        with reopened.start_backup("vm-b", datetime.now(timezone.utc)) as w:
            write_disk(w, "xvda", mixed_disk(3 * CHUNK, CHUNK, seed=12))
            raise RuntimeError("cancelled")
    assert w.removed_chunks == 2
    with reopened.start_backup("vm-b", datetime.now(timezone.utc)) as w:
        write_disk(w, "xvda", mixed_disk(3 * CHUNK, CHUNK, seed=13))
        pruned = w.commit()
    forget(reopened, [pruned.id])
    report = reopened.collect_garbage(grace_period=0, now=time.time() + 5)
    assert report.deleted_chunks == 2
    # Another VM with the same disk: every chunk found on the server and touched, none sent.
    with reopened.start_backup("vm-c", datetime.now(timezone.utc)) as writer:
        write_disk(writer, "xvda", data)
        copy = writer.commit()
    assert copy.totals["bytes_new"] == 0 and copy.totals["chunks_reused"] == 6
    assert reopened.verify().ok
    assert read_disk(reopened, manifest.id, "xvda") == data


def test_s3_verify_finds_a_damaged_chunk(s3_endpoint, bucket):
    backend = backend_for(s3_endpoint, bucket)
    repo = Repository.create(backend, passphrase=PASSPHRASE, scrypt_n=TEST_SCRYPT_N,
                             chunk_size=CHUNK)
    with repo.start_backup("vm-a", datetime.now(timezone.utc)) as writer:
        write_disk(writer, "xvda", mixed_disk(3 * CHUNK, CHUNK, seed=13))
        manifest = writer.commit()
    victim = manifest.disk("xvda").chunks[1]
    key = f"chunks/{victim[:2]}/{victim[2:4]}/{victim}"
    blob = bytearray(backend.get(key))
    blob[30] ^= 0x80
    backend.put_atomic(key, bytes(blob))
    assert repo.verify().damaged[0].damaged_chunks == {victim: "authentication tag mismatch"}
    assert repo.list_backups()[0].status == "damaged"


def test_s3_wrong_passphrase_and_missing_store(s3_endpoint, bucket):
    backend = backend_for(s3_endpoint, bucket)
    with pytest.raises(StoreNotFoundError, match=bucket):
        Repository.open(backend)
    Repository.create(backend, passphrase=PASSPHRASE, scrypt_n=TEST_SCRYPT_N)
    with pytest.raises(WrongKeyError):
        Repository.open(backend, passphrase="wrong")
    with pytest.raises(ObjectNotFoundError):
        backend.get("chunks/none")


def test_s3_missing_bucket_and_unreachable_endpoint_are_unavailable(s3_endpoint):
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        Repository.open(backend_for(s3_endpoint, "no-such-bucket"))
    dead = S3Backend(f"http://127.0.0.1:{free_port()}", "b", access_key="x", secret_key="y",
                     connect_timeout=1)
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        Repository.open(dead)


def test_s3_never_overwrites_an_existing_manifest_or_chunk(s3_endpoint, bucket):
    backend = backend_for(s3_endpoint, bucket)
    assert backend.put_atomic("backups/vm/20260101T000000Z/manifest", b"one", overwrite=False)
    assert not backend.put_atomic("backups/vm/20260101T000000Z/manifest", b"two",
                                  overwrite=False)
    assert backend.get("backups/vm/20260101T000000Z/manifest") == b"one"


def count_calls(backend, operation):
    """The paths of every request of one S3 operation (as sent by botocore)."""
    paths = []

    def record(params, **_):
        paths.append(params["url_path"])

    backend.client.meta.events.register(f"before-call.s3.{operation}", record)
    return paths


def test_s3_backup_sends_no_head_per_chunk_and_touches_only_listed_chunks(s3_endpoint, bucket):
    """The chunk index comes from one listing: a first backup asks nothing per chunk (a
    conditional PUT each), a second one of the same disk touches (server-side copy) each
    chunk it reuses and sends none. A touch of a missing object fails as not found: that is
    what makes a stale index entry safe."""
    backend = backend_for(s3_endpoint, bucket)
    repo = Repository.create(backend, encryption=False, chunk_size=CHUNK)
    data = mixed_disk(12 * CHUNK, CHUNK, seed=21)
    heads, copies, puts = (count_calls(backend, op) for op in ("HeadObject", "CopyObject",
                                                                "PutObject"))
    with repo.start_backup("vm-a", datetime.now(timezone.utc)) as writer:
        write_disk(writer, "xvda", data)
        first = writer.commit()
    assert first.totals["chunks_new"] == 8
    assert not [k for k in heads if "/chunks/" in k] and not copies
    assert len([k for k in puts if "/chunks/" in k]) == 8
    with repo.start_backup("vm-b", datetime.now(timezone.utc)) as writer:
        write_disk(writer, "xvda", data)
        second = writer.commit()
    assert second.totals["chunks_reused"] == 8 and second.totals["bytes_new"] == 0
    assert not [k for k in heads if "/chunks/" in k]
    assert len([k for k in copies if "/chunks/" in k]) == 8
    assert len([k for k in puts if "/chunks/" in k]) == 8  # none more
    with pytest.raises(ObjectNotFoundError):
        backend.touch("chunks/00/00/" + "00" * 32)
    assert read_disk(repo, second.id, "xvda") == data


class FailingUploads(S3Backend):
    """An S3 store whose fifth chunk upload fails (the server gone, as far as we know)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunk_puts = 0
        self.lock = threading.Lock()

    def put_atomic(self, key, data, *, overwrite=True):
        if key.startswith("chunks/"):
            with self.lock:
                self.chunk_puts += 1
                failing = self.chunk_puts == 5
            if failing:
                raise StoreUnavailableError(self.location, f"S3 endpoint unreachable writing {key}")
        return super().put_atomic(key, data, overwrite=overwrite)


def test_s3_a_failed_parallel_upload_fails_the_backup_without_a_manifest(s3_endpoint, bucket):
    backend = FailingUploads(s3_endpoint, bucket, "p", access_key="testing",
                             secret_key="testing", parallelism=8)
    repo = Repository.create(backend, encryption=False, chunk_size=CHUNK)
    data = mixed_disk(48 * CHUNK, CHUNK, seed=22)
    with pytest.raises(StoreUnavailableError, match="unreachable writing chunks/"):
        with repo.start_backup("vm-a", datetime.now(timezone.utc)) as writer:
            write_disk(writer, "xvda", data)
            writer.commit()
    assert backend.chunk_puts >= 5
    assert list(backend.list("backups/")) == []
    assert list(backend.list("locks/")) == []
    assert list(backend.list("chunks/")) == []  # the failed backup's own chunks removed
    assert repo.list_backups() == []
