"""Encryption at rest for secrets kept in the database (pool passwords, data store keys).

AES-256-GCM under a key derived from settings.SESAM_SECRET_KEY (which comes from the
environment, or from a 0600 file in the data directory for the demo). The stored text
names its key id, so a changed SESAM_SECRET_KEY gives a clear error instead of garbage.
"""
import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

_PREFIX = "v1"
# A remote device server has no SESAM_SECRET_KEY: it reads the copies the console sealed for
# its own key (backups/devices/sealing.py installs this there, and only there).
_unsealer = None


class SecretDecryptionError(Exception):
    """The stored secret cannot be read with the configured SESAM_SECRET_KEY."""


def _key():
    return hashlib.sha256(b"sesamweb-secret-at-rest\0" + settings.SESAM_SECRET_KEY.encode()).digest()


def _key_id(key):
    return hashlib.sha256(b"key-id\0" + key).hexdigest()[:8]


def encrypt_secret(plaintext: str, context: str = "") -> str:
    """Encrypt `plaintext`; `context` (e.g. "pool:42") binds it to its row."""
    key = _key()
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
    return f"{_PREFIX}:{_key_id(key)}:{base64.b64encode(nonce + sealed).decode()}"


def use_unsealer(function):
    """Read secrets through `function(stored, context)` from now on (None: SESAM_SECRET_KEY)."""
    global _unsealer
    _unsealer = function


def decrypt_secret(stored: str, context: str = "") -> str:
    if _unsealer is not None:
        return _unsealer(stored, context)
    try:
        version, key_id, blob = stored.split(":", 2)
    except ValueError:
        raise SecretDecryptionError("stored secret is not in a known format") from None
    key = _key()
    if version != _PREFIX or key_id != _key_id(key):
        raise SecretDecryptionError(
            "stored secret was encrypted with another SESAM_SECRET_KEY; restore that key or enter the secret again"
        )
    raw = base64.b64decode(blob)
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode()).decode()
    except InvalidTag:
        raise SecretDecryptionError("stored secret is damaged or belongs to another object") from None
