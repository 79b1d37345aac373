import json

import pytest

from backups.repository import (
    KeyAlreadyExportedError,
    LocalBackend,
    Repository,
    StoreExistsError,
    StoreNotFoundError,
    StoreUnavailableError,
    UnsupportedFormatError,
    WrongKeyError,
)

from .conftest import CHUNK, PASSPHRASE, TEST_SCRYPT_N


def test_it_creates_and_opens_an_encrypted_store(repo, store_dir):
    config = json.loads((store_dir / "store.json").read_text())
    assert config["encryption"]["algorithm"] == "aes-256-gcm"
    assert config["encryption"]["kdf"]["algorithm"] == "scrypt"
    assert config["compression"] == {"algorithm": "zstd", "level": 1}
    assert config["chunk_id"] == "blake3-keyed"
    assert "master" not in json.dumps(config)
    opened = Repository.open(LocalBackend(store_dir), passphrase=PASSPHRASE)
    assert opened.is_encrypted
    assert opened.keys.master == repo.keys.master
    assert opened.chunk_size == repo.chunk_size


def test_it_defaults_to_1_mib_chunks_and_strong_scrypt(tmp_path):
    repo = Repository.create(LocalBackend(tmp_path), encryption=False)
    assert repo.chunk_size == 1 << 20
    (tmp_path / "weak").mkdir()
    with pytest.raises(ValueError):
        Repository.create(LocalBackend(tmp_path / "weak"), passphrase="p", scrypt_n=2**10)


def test_it_refuses_a_wrong_passphrase_before_writing_anything(repo, store_dir, files_in):
    before = files_in(store_dir)
    with pytest.raises(WrongKeyError):
        Repository.open(LocalBackend(store_dir), passphrase="not the passphrase")
    with pytest.raises(WrongKeyError):
        Repository.open(LocalBackend(store_dir))
    assert files_in(store_dir) == before


def test_it_exports_the_key_file_once_and_opens_with_it(repo, store_dir):
    assert repo.key_exported_at is None
    key_file = repo.export_key_file()
    assert json.loads(store_dir.joinpath("store.json").read_text())["key_exported_at"]
    with pytest.raises(KeyAlreadyExportedError) as refused:
        repo.export_key_file()
    assert "already exported on" in str(refused.value)
    # A fresh open sees the export too.
    reopened = Repository.open(LocalBackend(store_dir), passphrase=PASSPHRASE)
    assert reopened.key_exported_at == repo.key_exported_at
    with pytest.raises(KeyAlreadyExportedError):
        reopened.export_key_file()
    assert reopened.export_key_file(force=True)

    by_key_file = Repository.open(LocalBackend(store_dir), key_file=key_file)
    assert by_key_file.keys.master == repo.keys.master


def test_a_passphrase_protected_key_file_needs_its_passphrase(repo, store_dir):
    key_file = repo.export_key_file(passphrase="file secret", scrypt_n=TEST_SCRYPT_N)
    assert repo.keys.master.hex() not in key_file.decode()
    with pytest.raises(WrongKeyError):
        Repository.open(LocalBackend(store_dir), key_file=key_file)
    opened = Repository.open(LocalBackend(store_dir), key_file=key_file,
                             key_file_passphrase="file secret")
    assert opened.keys.master == repo.keys.master


def test_a_key_file_of_another_store_is_refused(repo, tmp_path):
    (tmp_path / "other").mkdir()
    other = Repository.create(LocalBackend(tmp_path / "other"), passphrase="x",
                              scrypt_n=TEST_SCRYPT_N)
    with pytest.raises(WrongKeyError, match="another data store"):
        Repository.open(repo.backend, key_file=other.export_key_file())


def test_the_passphrase_can_be_changed(repo, store_dir):
    repo.change_passphrase("new one", scrypt_n=TEST_SCRYPT_N)
    with pytest.raises(WrongKeyError):
        Repository.open(LocalBackend(store_dir), passphrase=PASSPHRASE)
    assert Repository.open(LocalBackend(store_dir), passphrase="new one").keys == repo.keys


def test_a_plain_store_opens_without_a_key(plain_repo, store_dir):
    opened = Repository.open(LocalBackend(store_dir))
    assert not opened.is_encrypted
    with pytest.raises(WrongKeyError):
        opened.export_key_file()


def test_a_store_made_before_blake3_opens_with_its_recorded_ids(store_dir, clock):
    """Stores of the first format recorded HMAC-SHA256 inside "encryption"; their backups
    must stay readable and new backups must keep deduplicating against them."""
    repo = Repository.create(LocalBackend(store_dir), passphrase=PASSPHRASE, scrypt_n=TEST_SCRYPT_N,
                             chunk_size=CHUNK)
    config = json.loads((store_dir / "store.json").read_text())
    del config["chunk_id"]
    config["encryption"]["chunk_id"] = "hmac-sha256"
    (store_dir / "store.json").write_text(json.dumps(config))
    legacy = Repository.open(LocalBackend(store_dir), passphrase=PASSPHRASE)
    assert legacy.codec.chunk_id_algorithm == "hmac-sha256"
    data = bytes(range(256)) * (CHUNK // 256)
    for _ in range(2):
        with legacy.start_backup("vm-1", clock()) as writer:
            disk = writer.add_disk("vbd0", CHUNK)
            disk.write(0, data)
            disk.finish()
            manifest = writer.commit()
    assert manifest.totals["chunks_reused"] == 1
    assert legacy.read_chunk(manifest.disks[0].chunks[0]) == data
    assert repo.codec.chunk_id(data) != legacy.codec.chunk_id(data)


def test_an_unknown_chunk_id_algorithm_is_refused(store_dir):
    Repository.create(LocalBackend(store_dir), encryption=False, chunk_size=CHUNK)
    config = json.loads((store_dir / "store.json").read_text())
    config["chunk_id"] = "md5"
    (store_dir / "store.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedFormatError, match="md5"):
        Repository.open(LocalBackend(store_dir))


def test_it_refuses_to_create_over_an_existing_store(repo, store_dir):
    with pytest.raises(StoreExistsError):
        Repository.create(LocalBackend(store_dir), encryption=False)


def test_a_directory_without_store_json_is_not_a_store(tmp_path):
    with pytest.raises(StoreNotFoundError) as error:
        Repository.open(LocalBackend(tmp_path))
    assert str(tmp_path) in str(error.value)


def test_an_unreadable_store_json_is_reported_with_the_location(store_dir):
    (store_dir / "store.json").write_text("{not json")
    with pytest.raises(StoreNotFoundError, match=str(store_dir)):
        Repository.open(LocalBackend(store_dir))


def test_a_missing_directory_is_unavailable(tmp_path):
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        Repository.open(LocalBackend(tmp_path / "not-mounted"))
    with pytest.raises(StoreUnavailableError):
        Repository.create(LocalBackend(tmp_path / "not-mounted"), encryption=False)
