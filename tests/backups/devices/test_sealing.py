"""A device server sees only the secrets of its own stores: the console seals them for the
device server's public key; the device server (without SESAM_SECRET_KEY) reads those copies
and nothing else."""
import pytest

from backups.devices.models import DeviceSecret
from backups.devices.registration import revoke_server
from backups.devices.sealing import OwnSecrets, seal, share_store_secrets, unseal, load_private_key
from backups.devices.stores import assign_store
from backups.stores import create_store
from sesamweb.secrets import SecretDecryptionError
from tests.backups.devices.conftest import acting_as_device_server

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def stores(tmp_path, db):
    return (create_store(name="branch-nas", path=str(tmp_path / "a"), passphrase=PASSPHRASE),
            create_store(name="hq-nas", path=str(tmp_path / "b"), passphrase=PASSPHRASE))


def test_a_device_server_reads_its_own_stores_key_and_no_other(make_device_server, stores):
    own, other = stores
    server = make_device_server()
    own_key, other_key = own.data_key(), other.data_key()
    assign_store(own, server)
    assert set(DeviceSecret.objects.values_list("context", flat=True)) == {"store-key:branch-nas"}
    assert own_key not in DeviceSecret.objects.get().sealed

    own.refresh_from_db()
    other.refresh_from_db()
    with acting_as_device_server(server):
        assert own.data_key() == own_key
        with pytest.raises(SecretDecryptionError, match="holds no copy of store-key:hq-nas"):
            other.data_key()
    assert other.data_key() == other_key          # the console itself still reads everything


def test_a_second_device_server_cannot_read_the_first_ones_copies(make_device_server, stores):
    own, _other = stores
    first, second = make_device_server("branch"), make_device_server("plant")
    assign_store(own, first)
    sealed = DeviceSecret.objects.get(server=first).sealed
    with pytest.raises(SecretDecryptionError, match="not for this device server's key"):
        unseal(load_private_key(second.key_file), sealed, "store-key:branch-nas")
    # Nor can a copy be passed off as another secret: the context is bound.
    with pytest.raises(SecretDecryptionError):
        unseal(load_private_key(first.key_file), sealed, "store-key:hq-nas")


def test_moving_or_revoking_takes_the_secrets_away(make_device_server, stores):
    own, _other = stores
    first, second = make_device_server("branch"), make_device_server("plant")
    assign_store(own, first)
    assign_store(own, second)
    assert list(DeviceSecret.objects.values_list("server__name", flat=True)) == ["plant"]
    own.refresh_from_db()
    with acting_as_device_server(first), pytest.raises(SecretDecryptionError, match="holds no copy"):
        own.data_key()

    revoke_server(second)
    assert not DeviceSecret.objects.exists()
    with acting_as_device_server(second), pytest.raises(SecretDecryptionError, match="holds no copy"):
        own.data_key()


def test_a_changed_secret_is_sealed_again_and_the_old_copy_is_refused(make_device_server, stores):
    own, _other = stores
    server = make_device_server()
    own = assign_store(own, server)
    own.set_data_key("a new key text")
    own.save()
    reader = OwnSecrets(server.name, server.key_file)
    with pytest.raises(SecretDecryptionError, match="outdated copy"):
        reader(own.key_encrypted, "store-key:branch-nas")
    assert share_store_secrets(own) == 1
    assert reader(own.key_encrypted, "store-key:branch-nas") == "a new key text"


def test_seal_refuses_what_is_not_a_public_key():
    with pytest.raises(ValueError, match="X25519"):
        seal("c2hvcnQ=", "secret", "store-key:x")
