import hashlib
import hmac
import os

import blake3
import pytest

from backups.repository import ChunkCorruptError
from backups.repository.chunks import FLAG_COMPRESSED, ChunkCodec
from backups.repository.keys import DataKeys


@pytest.fixture
def codec():
    return ChunkCodec(chunk_size=1 << 20, keys=DataKeys.generate())


def test_it_compresses_only_when_that_saves_space(codec):
    text = b"all work and no play " * 5000
    noise = os.urandom(100_000)
    assert codec.encode(codec.chunk_id(text), text)[4] & FLAG_COMPRESSED
    assert not codec.encode(codec.chunk_id(noise), noise)[4] & FLAG_COMPRESSED
    for data in (text, noise):
        cid = codec.chunk_id(data)
        assert codec.decode(cid, codec.encode(cid, data)) == data


def test_encrypted_ids_are_keyed_blake3_and_plain_ids_are_blake3(codec):
    data = b"same content"
    other_store = ChunkCodec(chunk_size=1 << 20, keys=DataKeys.generate())
    assert codec.chunk_id_algorithm == "blake3-keyed"
    assert codec.chunk_id(data) != other_store.chunk_id(data)
    assert codec.chunk_id(data) != blake3.blake3(data).hexdigest()
    plain = ChunkCodec(chunk_size=1 << 20)
    assert plain.chunk_id(data) == blake3.blake3(data).hexdigest()


def test_stores_made_before_blake3_keep_their_sha256_ids():
    data = b"same content"
    keys = DataKeys.generate()
    legacy = ChunkCodec(chunk_size=1 << 20, keys=keys, chunk_id_algorithm="hmac-sha256")
    assert legacy.chunk_id(data) == hmac.new(keys.chunk_id, data, "sha256").hexdigest()
    plain = ChunkCodec(chunk_size=1 << 20, chunk_id_algorithm="sha256")
    assert plain.chunk_id(data) == hashlib.sha256(data).hexdigest()
    cid = legacy.chunk_id(data)
    assert legacy.decode(cid, legacy.encode(cid, data)) == data


def test_an_encrypted_store_never_uses_unkeyed_ids():
    with pytest.raises(ValueError, match="not valid for an encrypted store"):
        ChunkCodec(chunk_size=1 << 20, keys=DataKeys.generate(), chunk_id_algorithm="sha256")
    with pytest.raises(ValueError, match="not valid for an unencrypted store"):
        ChunkCodec(chunk_size=1 << 20, chunk_id_algorithm="blake3-keyed")


def test_a_tampered_or_swapped_chunk_is_refused(codec):
    a, b = b"a" * 1000, b"b" * 1000
    blob_a = codec.encode(codec.chunk_id(a), a)
    flipped = bytearray(blob_a)
    flipped[-20] ^= 1
    with pytest.raises(ChunkCorruptError, match="tag"):
        codec.decode(codec.chunk_id(a), bytes(flipped))
    with pytest.raises(ChunkCorruptError):
        codec.decode(codec.chunk_id(b), blob_a)


def test_a_plain_chunk_with_wrong_content_fails_its_id(tmp_path):
    plain = ChunkCodec(chunk_size=1 << 20)
    data = os.urandom(4096)
    blob = bytearray(plain.encode(plain.chunk_id(data), data))
    blob[100] ^= 0xFF
    with pytest.raises(ChunkCorruptError, match="does not match its id"):
        plain.decode(plain.chunk_id(data), bytes(blob))
