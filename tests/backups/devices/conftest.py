"""Device server helpers: a registered device server with its private key in a file, and a
way to act as that device server in this process (its secrets only)."""
from contextlib import contextmanager

import pytest

from backups.devices.registration import issue_token, register
from backups.devices.sealing import OwnSecrets, create_key_file
from sesamweb.secrets import use_unsealer


@pytest.fixture
def make_device_server(tmp_path, db):
    def make(name="branch", site="Hamburg"):
        key_file = tmp_path / f"{name}.key"
        _row, token = issue_token(name, site=site)
        server = register(token=token, name=name, public_key=create_key_file(key_file), address=f"{name}.example")
        server.key_file = key_file
        return server
    return make


@contextmanager
def acting_as_device_server(server):
    """decrypt_secret as the device server's workers have it (no SESAM_SECRET_KEY)."""
    use_unsealer(OwnSecrets(server.name, server.key_file))
    try:
        yield
    finally:
        use_unsealer(None)
