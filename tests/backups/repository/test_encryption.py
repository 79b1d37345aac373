import hashlib

import blake3

from .conftest import CHUNK
from .diskdata import text_block, write_disk

SECRET = b"TOP-SECRET-PAYROLL-RECORD "


def all_bytes(store_dir):
    return b"".join(p.read_bytes() for p in store_dir.rglob("*") if p.is_file())


def test_an_encrypted_store_holds_no_plaintext_and_no_plain_hashes(repo, clock, store_dir):
    # Incompressible-looking but recognisable content, and very compressible content.
    data = (SECRET * (CHUNK // len(SECRET) + 1))[:CHUNK] + text_block(CHUNK, seed=3)
    with repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", data)
        writer.attach("ova.xml", b"<name>payroll-server</name>")
        writer.set_metadata({"vm": {"name_label": "payroll-server"}})
        manifest = writer.commit()
    stored = all_bytes(store_dir)
    assert SECRET not in stored
    assert b"payroll-server" not in stored
    assert text_block(CHUNK, seed=3)[:64] not in stored
    paths = " ".join(str(p) for p in store_dir.rglob("*"))
    for start in range(0, len(data), CHUNK):
        plain = data[start:start + CHUNK]
        for digest in (hashlib.sha256(plain), hashlib.blake2b(plain, digest_size=32),
                       blake3.blake3(plain)):
            assert digest.hexdigest().encode() not in stored
            assert digest.hexdigest() not in paths
            assert digest.digest() not in stored
    assert set(manifest.disk("xvda").chunks) <= {p.name for p in store_dir.glob("chunks/*/*/*")}


def test_a_plain_store_uses_blake3_ids(plain_repo, clock, store_dir):
    data = text_block(CHUNK, seed=4)
    with plain_repo.start_backup("vm-a", clock()) as writer:
        write_disk(writer, "xvda", data)
        manifest = writer.commit()
    assert manifest.disk("xvda").chunks == [blake3.blake3(data).hexdigest()]
    assert (store_dir / "chunks" / manifest.disk("xvda").chunks[0][:2]).is_dir()
