"""Chunk encoding: one stored object per distinct chunk of plaintext.

    header (5 bytes: b"SWC", version, flags) | nonce (12) | AES-256-GCM(body) | tag (16)

body is zstd(plaintext) when that is smaller, else the plaintext (flag bit 0). On a store
without encryption the object is header | body. The associated data of the GCM seal is the
header plus the chunk id, so a chunk cannot be swapped for another or have its flags changed.

Chunk id: HMAC-SHA256(chunk-id key, plaintext) on an encrypted store (keyed: the store leaks
no content hashes), SHA-256(plaintext) otherwise. HMAC-SHA256 was measured at 1.2 GB/s per
core here (SHA extensions) against 0.7 GB/s for keyed BLAKE2b; both release the GIL.
"""
import functools
import hashlib
import hmac
import os
import threading

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ChunkCorruptError

MAGIC = b"SWC"
VERSION = 1
FLAG_COMPRESSED = 0x01
FLAG_ENCRYPTED = 0x02
HEADER_SIZE = 5
NONCE_SIZE = 12


def chunk_key(chunk_id: str) -> str:
    """Fan-out path of a chunk in the store."""
    return f"chunks/{chunk_id[:2]}/{chunk_id[2:4]}/{chunk_id}"


@functools.lru_cache(maxsize=8)
def _zeros(length) -> bytes:
    return bytes(length)


def is_zero(data) -> bool:
    # Comparing against a zero buffer is a memcmp, far faster than any() or count().
    return data == _zeros(len(data))


class ChunkCodec:
    """Computes ids and encodes/decodes chunks. Safe to share between threads: each thread
    gets its own zstd (de)compressor (a shared ZstdCompressor crashed the process)."""

    def __init__(self, *, chunk_size, compression_level=3, keys=None):
        self.chunk_size = chunk_size
        self.compression_level = compression_level
        self.encrypted = keys is not None
        self._id_key = keys.chunk_id if keys else None
        self._aead = AESGCM(keys.chunk_encryption) if keys else None
        self._local = threading.local()

    def _compressor(self):
        local = self._local
        if not hasattr(local, "compressor"):
            local.compressor = zstandard.ZstdCompressor(level=self.compression_level)
            local.decompressor = zstandard.ZstdDecompressor()
        return local.compressor, local.decompressor

    def chunk_id(self, data) -> str:
        if self._id_key is not None:
            return hmac.new(self._id_key, data, "sha256").hexdigest()
        return hashlib.sha256(data).hexdigest()

    def encode(self, chunk_id: str, data) -> bytes:
        compressor, _ = self._compressor()
        flags = 0
        body = compressor.compress(data)
        if len(body) < len(data):
            flags |= FLAG_COMPRESSED
        else:
            body = bytes(data)
        if self._aead is None:
            return MAGIC + bytes((VERSION, flags)) + body
        flags |= FLAG_ENCRYPTED
        header = MAGIC + bytes((VERSION, flags))
        nonce = os.urandom(NONCE_SIZE)
        return header + nonce + self._aead.encrypt(nonce, body, header + chunk_id.encode())

    def decode(self, chunk_id: str, blob: bytes) -> bytes:
        """Return the plaintext, checking the tag, decompression and the id."""
        if len(blob) < HEADER_SIZE or blob[:3] != MAGIC or blob[3] != VERSION:
            raise ChunkCorruptError(chunk_id, "bad header")
        flags = blob[4]
        header = blob[:HEADER_SIZE]
        if bool(flags & FLAG_ENCRYPTED) != self.encrypted:
            raise ChunkCorruptError(chunk_id, "encryption flag does not match the store")
        if self._aead is not None:
            nonce = blob[HEADER_SIZE:HEADER_SIZE + NONCE_SIZE]
            try:
                body = self._aead.decrypt(nonce, blob[HEADER_SIZE + NONCE_SIZE:],
                                          header + chunk_id.encode())
            except InvalidTag:
                raise ChunkCorruptError(chunk_id, "authentication tag mismatch") from None
        else:
            body = blob[HEADER_SIZE:]
        if flags & FLAG_COMPRESSED:
            _, decompressor = self._compressor()
            try:
                data = decompressor.decompress(body, max_output_size=self.chunk_size)
            except zstandard.ZstdError as exc:
                raise ChunkCorruptError(chunk_id, f"decompression failed: {exc}") from None
        else:
            data = body
        if not hmac.compare_digest(self.chunk_id(data), chunk_id):
            raise ChunkCorruptError(chunk_id, "content does not match its id")
        return data
