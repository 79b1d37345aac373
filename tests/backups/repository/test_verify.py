from backups.repository.chunks import chunk_key

from .conftest import CHUNK
from .diskdata import mixed_disk, write_disk


def backup(repo, clock, vm, data):
    with repo.start_backup(vm, clock()) as writer:
        write_disk(writer, "xvda", data)
        return writer.commit()


def test_verify_finds_a_flipped_byte_and_marks_the_backup_damaged(repo, clock, store_dir):
    good = backup(repo, clock, "vm-a", mixed_disk(6 * CHUNK, CHUNK, seed=1))
    hit = backup(repo, clock, "vm-b", mixed_disk(6 * CHUNK, CHUNK, seed=2))
    assert repo.verify().ok
    victim = hit.disk("xvda").chunks[2]
    path = store_dir / chunk_key(victim)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))

    report = repo.verify()
    assert not report.ok
    [damaged] = report.damaged
    assert damaged.id == hit.id
    assert damaged.damaged_chunks == {victim: "authentication tag mismatch"}
    statuses = {s.id: s.status for s in repo.list_backups()}
    assert statuses == {good.id: "ok", hit.id: "damaged"}
    marker = repo.list_backups("vm-b")[0].damaged
    assert marker["damaged_chunks"] == {victim: "authentication tag mismatch"}


def test_verify_reports_a_missing_chunk_and_a_later_clean_verify_clears_the_mark(
        repo, clock, store_dir):
    hit = backup(repo, clock, "vm-a", mixed_disk(3 * CHUNK, CHUNK, seed=3))
    victim = hit.disk("xvda").chunks[1]
    path = store_dir / chunk_key(victim)
    saved = path.read_bytes()
    path.unlink()
    assert repo.verify([hit.id]).damaged[0].damaged_chunks == {victim: "missing"}
    assert repo.list_backups()[0].status == "damaged"
    path.write_bytes(saved)
    assert repo.verify([hit.id]).ok
    assert repo.list_backups()[0].status == "ok"


def test_verify_reads_each_shared_chunk_once(repo, clock):
    data = mixed_disk(6 * CHUNK, CHUNK, seed=4)
    backup(repo, clock, "vm-a", data)
    backup(repo, clock, "vm-b", data)
    report = repo.verify()
    assert report.ok and report.chunks_checked == 4 and len(report.backups) == 2
