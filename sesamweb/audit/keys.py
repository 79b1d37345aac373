"""The audit log's secret keys, which live outside the database.

With write access to the database alone an attacker can change rows but not compute their
HMAC, because the key comes from the environment or the secrets file (SESAM_AUDIT_KEY, else
derived from SESAM_SECRET_KEY). HKDF gives each use its own key: knowing the chain key
reveals nothing about the key that encrypts pool passwords, and a checkpoint's MAC can never
be passed off as a row's.
"""
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_SALT = b"sesamweb audit log"


@lru_cache(maxsize=8)
def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose).derive(secret.encode())


def _secret() -> str:
    return getattr(settings, "SESAM_AUDIT_KEY", "") or settings.SESAM_SECRET_KEY


def chain_key() -> bytes:
    """Key of the rows' HMAC-SHA256 chain."""
    return _derive(_secret(), b"chain v2")


def checkpoint_key() -> bytes:
    """Key of the signed checkpoints of the chain's head."""
    return _derive(_secret(), b"checkpoint v1")

