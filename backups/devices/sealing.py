"""The secrets a device server may read: its own stores' keys and S3 secrets, and the
passwords of the pools whose VMs it backs up, each sealed by the console for the device
server's X25519 public key. The device server never has SESAM_SECRET_KEY; its private key
stays in a 0600 file on its host (SESAM_DEVICE_KEY_FILE) and never reaches the console.

Sealing: an ephemeral X25519 key, HKDF-SHA256 of the shared secret, AES-256-GCM with the
secret's context (e.g. "store-key:nas") as associated data, so a copy cannot be passed off as
another secret.
"""
import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from sesamweb.secrets import SecretDecryptionError, decrypt_secret

from .models import DeviceSecret, DeviceServer

_PREFIX = "d1"
_RAW = dict(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)


def key_file_path() -> Path:
    return Path(settings.SESAM_DEVICE_KEY_FILE or settings.DATA_DIR / "device-server.key")


def create_key_file(path: Path | None = None) -> str:
    """A new private key in a 0600 file (an existing one is kept); returns the public key."""
    path = path or key_file_path()
    if not path.exists():
        raw = X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(raw).decode() + "\n")
    return public_key_of(load_private_key(path))


def load_private_key(path: Path | None = None) -> X25519PrivateKey:
    path = path or key_file_path()
    try:
        raw = base64.b64decode(path.read_text().strip())
    except FileNotFoundError:
        raise SecretDecryptionError(f"no device server key at {path}: register this device server first") from None
    return X25519PrivateKey.from_private_bytes(raw)


def public_key_of(private_key: X25519PrivateKey) -> str:
    return base64.b64encode(private_key.public_key().public_bytes(**_RAW)).decode()


def parse_public_key(text: str) -> X25519PublicKey:
    """The public key a device server sent; ValueError if it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError("the public key is not base64") from None
    if len(raw) != 32:
        raise ValueError("the public key is not an X25519 key (32 bytes)")
    return X25519PublicKey.from_public_bytes(raw)


def _aead_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"sesam-device-seal\0" + ephemeral + recipient).derive(shared)


def seal(public_key: str, plaintext: str, context: str) -> str:
    recipient = parse_public_key(public_key)
    ephemeral = X25519PrivateKey.generate()
    eph_raw, rcpt_raw = ephemeral.public_key().public_bytes(**_RAW), recipient.public_bytes(**_RAW)
    nonce = os.urandom(12)
    sealed = AESGCM(_aead_key(ephemeral.exchange(recipient), eph_raw, rcpt_raw)).encrypt(
        nonce, plaintext.encode(), context.encode())
    return f"{_PREFIX}:{base64.b64encode(eph_raw + nonce + sealed).decode()}"


def unseal(private_key: X25519PrivateKey, stored: str, context: str) -> str:
    version, _, blob = stored.partition(":")
    if version != _PREFIX:
        raise SecretDecryptionError("sealed secret is not in a known format")
    raw = base64.b64decode(blob)
    eph_raw, nonce, sealed = raw[:32], raw[32:44], raw[44:]
    rcpt_raw = private_key.public_key().public_bytes(**_RAW)
    key = _aead_key(private_key.exchange(X25519PublicKey.from_public_bytes(eph_raw)), eph_raw, rcpt_raw)
    try:
        return AESGCM(key).decrypt(nonce, sealed, context.encode()).decode()
    except InvalidTag:
        raise SecretDecryptionError(f"the sealed copy of {context} is not for this device server's key") from None


def _digest(encrypted: str) -> str:
    return hashlib.sha256(encrypted.encode()).hexdigest()


# --- in the console: seal what a device server needs --------------------------------------

def store_secrets(store):
    """(context, encrypted) of a store's secrets, as DataStore keeps them."""
    pairs = []
    if store.key_encrypted:
        pairs.append((f"store-key:{store.name}", store.key_encrypted))
    if store.s3_secret_encrypted:
        pairs.append((f"store-s3:{store.name}", store.s3_secret_encrypted))
    return pairs


def ensure_sealed(server: DeviceServer, context: str, encrypted: str) -> bool:
    """Seal one console secret for `server` unless an up-to-date copy exists; True if sealed now."""
    digest = _digest(encrypted)
    if DeviceSecret.objects.filter(server=server, context=context, source_digest=digest).exists():
        return False
    sealed = seal(server.public_key, decrypt_secret(encrypted, context), context)
    DeviceSecret.objects.update_or_create(server=server, context=context,
                                          defaults={"sealed": sealed, "source_digest": digest})
    return True


def share_store_secrets(store) -> int:
    """The store's owner gets sealed copies of its secrets; any other device server loses them."""
    pairs = store_secrets(store)
    contexts = [f"store-key:{store.name}", f"store-s3:{store.name}"]
    others = DeviceSecret.objects.filter(context__in=contexts)
    if store.device_server_id:
        others = others.exclude(server_id=store.device_server_id)
    others.delete()
    if not store.device_server_id or store.device_server.is_revoked:
        return 0
    return sum(ensure_sealed(store.device_server, context, encrypted) for context, encrypted in pairs)


def share_pool_secret(server: DeviceServer, pool) -> bool:
    """The password of a pool whose VMs the device server backs up."""
    if not pool.password_encrypted:
        return False
    return ensure_sealed(server, f"pool:{pool.pk}", pool.password_encrypted)


def is_device_server_process() -> bool:
    return bool(settings.SESAM_DEVICE_SERVER)


# --- on the device server: read them --------------------------------------------------------

class OwnSecrets:
    """decrypt_secret on a device server: only the copies sealed for its own key."""

    def __init__(self, name: str, key_path: Path | None = None):
        self.name = name
        self.key_path = key_path
        self._private_key = None

    @property
    def private_key(self):
        if self._private_key is None:      # loaded on first use: `register` runs before the key exists
            self._private_key = load_private_key(self.key_path)
        return self._private_key

    def __call__(self, stored: str, context: str = "") -> str:
        row = (DeviceSecret.objects.filter(server__name=self.name, server__revoked_at=None, context=context)
               .only("sealed", "source_digest").first())
        if row is None:
            raise SecretDecryptionError(
                f"device server {self.name} holds no copy of {context or 'this secret'}: it belongs to a data "
                "store or pool this device server does not serve")
        if row.source_digest != _digest(stored):
            raise SecretDecryptionError(
                f"device server {self.name} holds an outdated copy of {context}; the console seals the new "
                "one when it next sends this store's work")
        return unseal(self.private_key, row.sealed, context)


def install_own_secrets():
    """In a device server's worker processes (SESAM_DEVICE_SERVER set): secrets come from its
    sealed copies only."""
    from sesamweb.secrets import use_unsealer

    use_unsealer(OwnSecrets(settings.SESAM_DEVICE_SERVER))
