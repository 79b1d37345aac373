import pytest
from django.test import override_settings

from sesamweb.secrets import SecretDecryptionError, decrypt_secret, encrypt_secret


def test_it_round_trips_and_hides_the_plaintext():
    stored = encrypt_secret("s3cret-pool-password", context="pool:1")
    assert "s3cret" not in stored
    assert decrypt_secret(stored, context="pool:1") == "s3cret-pool-password"


def test_it_refuses_a_secret_moved_to_another_row():
    stored = encrypt_secret("pw", context="pool:1")
    with pytest.raises(SecretDecryptionError, match="another object"):
        decrypt_secret(stored, context="pool:2")


def test_it_names_a_changed_secret_key():
    stored = encrypt_secret("pw")
    with override_settings(SESAM_SECRET_KEY="another-key"):
        with pytest.raises(SecretDecryptionError, match="another SESAM_SECRET_KEY"):
            decrypt_secret(stored)
