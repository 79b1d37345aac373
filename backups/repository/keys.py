"""Data store keys.

A store has one random 32-byte master key. Three sub-keys are derived from it with HKDF:
chunk encryption, chunk ids (a keyed hash, so the store leaks no content hashes) and manifest
encryption. The master key is kept in store.json wrapped (AES-256-GCM) by a key derived from
the administrator's passphrase with scrypt.

Key file decision: the exported key file holds the master key itself (base64), so it opens
the store when the passphrase is forgotten; that is its purpose ("losing both passphrase and
key file means losing the data"). It is therefore a secret to keep offline. An export can
optionally be protected by a separate passphrase (then it is wrapped exactly like store.json).
"""
import base64
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import WrongKeyError

KEY_FILE_FORMAT = "sesamweb-key-file"
# scrypt cost: n=2**17, r=8 takes ~0.35 s and 128 MiB here; 2**15 is the floor we accept.
DEFAULT_SCRYPT_N = 2**17
MIN_SCRYPT_N = 2**15
WRAP_AAD = b"sesamweb master key v1"


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _hkdf(master: bytes, purpose: bytes, length=32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=b"sesamweb " + purpose).derive(master)


@dataclass(frozen=True)
class DataKeys:
    """The sub-keys one store uses, all derived from its master key."""

    master: bytes
    chunk_encryption: bytes
    chunk_id: bytes
    manifest_encryption: bytes
    key_id: str

    @classmethod
    def from_master(cls, master: bytes) -> "DataKeys":
        if len(master) != 32:
            raise WrongKeyError("a data store master key is 32 bytes")
        return cls(
            master=master,
            chunk_encryption=_hkdf(master, b"chunk encryption v1"),
            chunk_id=_hkdf(master, b"chunk id v1"),
            manifest_encryption=_hkdf(master, b"manifest encryption v1"),
            key_id=_hkdf(master, b"key id v1", 8).hex(),
        )

    @classmethod
    def generate(cls) -> "DataKeys":
        return cls.from_master(os.urandom(32))


def _derive_wrapping_key(passphrase: str, kdf: dict) -> bytes:
    if kdf.get("algorithm") != "scrypt":
        raise WrongKeyError(f"unsupported key derivation {kdf.get('algorithm')!r}")
    return Scrypt(salt=b64d(kdf["salt"]), length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(
        passphrase.encode("utf-8")
    )


def wrap_master_key(master: bytes, passphrase: str, *, scrypt_n=DEFAULT_SCRYPT_N) -> dict:
    """Return the JSON-able record of the master key encrypted under the passphrase."""
    if not passphrase:
        raise ValueError("an encrypted data store needs a non-empty passphrase")
    if scrypt_n < MIN_SCRYPT_N or scrypt_n & (scrypt_n - 1):
        raise ValueError(f"scrypt n must be a power of two >= {MIN_SCRYPT_N}")
    kdf = {"algorithm": "scrypt", "n": scrypt_n, "r": 8, "p": 1, "salt": b64e(os.urandom(16))}
    nonce = os.urandom(12)
    wrapped = AESGCM(_derive_wrapping_key(passphrase, kdf)).encrypt(nonce, master, WRAP_AAD)
    return {"kdf": kdf, "nonce": b64e(nonce), "wrapped_key": b64e(wrapped)}


def unwrap_master_key(record: dict, passphrase: str) -> bytes:
    try:
        key = _derive_wrapping_key(passphrase, record["kdf"])
        return AESGCM(key).decrypt(b64d(record["nonce"]), b64d(record["wrapped_key"]), WRAP_AAD)
    except InvalidTag:
        raise WrongKeyError("wrong passphrase for this data store") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise WrongKeyError(f"the wrapped key record is malformed: {exc}") from None


def make_key_file(keys: DataKeys, store_id: str, exported_at: str, passphrase=None,
                  scrypt_n=DEFAULT_SCRYPT_N) -> bytes:
    document = {"format": KEY_FILE_FORMAT, "version": 1, "store_id": store_id,
                "key_id": keys.key_id, "exported_at": exported_at}
    if passphrase:
        document["protected"] = wrap_master_key(keys.master, passphrase, scrypt_n=scrypt_n)
    else:
        document["master_key"] = b64e(keys.master)
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def read_key_file(data: bytes, passphrase=None) -> DataKeys:
    try:
        document = json.loads(data)
        if document.get("format") != KEY_FILE_FORMAT:
            raise ValueError("not a sesamweb key file")
        if "protected" in document:
            if not passphrase:
                raise WrongKeyError("this key file is protected by a passphrase")
            master = unwrap_master_key(document["protected"], passphrase)
        else:
            master = b64d(document["master_key"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WrongKeyError(f"unreadable key file: {exc}") from None
    return DataKeys.from_master(master)
