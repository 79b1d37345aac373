"""The backup commands: what an administrator scripts, with clear errors and exit codes."""
import json

import pytest
from django.core.management import CommandError, call_command

from backups.models import BackupRun, DataStore, RestorePoint, VmBackup
from backups.stores import open_repository

pytestmark = pytest.mark.slow


def run(*args):
    from io import StringIO
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def passphrase_file(tmp_path):
    path = tmp_path / "passphrase"
    path.write_text("a long enough passphrase\n")
    return str(path)


def test_add_store_creates_an_encrypted_store_and_says_to_export_the_key(tmp_path, passphrase_file, transactional_db):
    out = run("add_store", "main", "--path", str(tmp_path / "main"), "--passphrase-file", passphrase_file)

    store = DataStore.objects.get(name="main")
    assert store.encrypted and "export_key" in out
    assert open_repository(store).is_encrypted
    assert "a long enough passphrase" not in store.key_encrypted


def test_add_store_refuses_a_path_whose_parent_is_missing(tmp_path, passphrase_file, transactional_db):
    with pytest.raises(CommandError, match="is the share mounted"):
        run("add_store", "x", "--path", str(tmp_path / "nfs" / "backups"), "--passphrase-file", passphrase_file)
    assert not DataStore.objects.exists()


def test_add_store_refuses_a_short_passphrase(tmp_path, transactional_db):
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(CommandError, match="at least 12"):
        run("add_store", "x", "--path", str(tmp_path / "s"), "--passphrase-file", str(short))


def test_the_key_file_is_exported_once(tmp_path, passphrase_file, transactional_db):
    run("add_store", "main", "--path", str(tmp_path / "main"), "--passphrase-file", passphrase_file)
    run("export_key", "main", "--out", str(tmp_path / "main.key"))
    assert json.loads((tmp_path / "main.key").read_text())["format"] == "sesamweb-key-file"

    with pytest.raises(CommandError, match="exported already"):
        run("export_key", "main", "--out", str(tmp_path / "again.key"))
    assert not (tmp_path / "again.key").exists()


def test_backup_list_verify_prune_and_gc_from_the_command_line(pool, tmp_path, passphrase_file, pool_reader):
    run("add_store", "main", "--path", str(tmp_path / "main"), "--passphrase-file", passphrase_file)
    out = run("backup", "--vm", "test-vm-1", "--store", "main", "--method", "normal")
    assert "Full backup of test-vm-1 done" in out
    # The method defaults to a normal snapshot, as in the web form.
    run("backup", "--vm", "test-vm-1", "--store", "main", "--incremental")

    listing = json.loads(run("list_backups", "--vm", "test-vm-1", "--json"))
    assert len(listing) == 2
    assert {"id", "vm_uuid", "vm_name", "time", "method", "virtual_size", "bytes_stored"} <= set(listing[0])
    assert listing[0]["vm_name"] == "test-vm-1" and listing[0]["method"] == "normal"

    assert "All verified restore points are intact" in run("verify", "--store", "main")

    out = run("prune", "--store", "main", "--keep-last", "1")
    assert "1 restore point(s) deleted" in out
    assert RestorePoint.objects.count() == 1
    assert "deleted" in run("gc", "--store", "main", "--grace-period", "0")
    assert "All verified" in run("verify", "--store", "main")


def test_verify_finds_a_corrupted_chunk_and_marks_the_restore_point(pool, tmp_path, passphrase_file):
    run("add_store", "main", "--path", str(tmp_path / "main"), "--passphrase-file", passphrase_file)
    run("backup", "--vm", "test-vm-4", "--store", "main", "--method", "normal")
    chunk = max((p for p in (tmp_path / "main" / "chunks").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x40
    chunk.write_bytes(bytes(data))

    with pytest.raises(CommandError, match="1 restore point"):
        run("verify", "--store", "main")
    assert RestorePoint.objects.get().verify_state == "damaged"


def test_backup_names_what_is_wrong(pool, tmp_path, passphrase_file):
    run("add_store", "main", "--path", str(tmp_path / "main"), "--passphrase-file", passphrase_file)
    with pytest.raises(CommandError, match="no VM with uuid or name 'nope'"):
        run("backup", "--vm", "nope", "--store", "main", "--method", "normal")
    with pytest.raises(CommandError, match="no data store named 'elsewhere'"):
        run("backup", "--vm", "test-vm-1", "--store", "elsewhere", "--method", "normal")
    with pytest.raises(CommandError, match="quiesced snapshot not possible"):
        run("backup", "--vm", "test-vm-1", "--store", "main", "--method", "quiesced")


def test_a_store_is_adopted_by_a_console_that_lost_its_database(pool, tmp_path, passphrase_file):
    """After the console's database is gone, the store opens with its key file (or passphrase)
    and lists its restore points again; a wrong key or a directory without a store saves nothing."""
    run("add_store", "main", "--path", str(tmp_path / "main"), "--passphrase-file", passphrase_file)
    run("export_key", "main", "--out", str(tmp_path / "main.key"))
    run("backup", "--vm", "test-vm-1", "--store", "main")
    taken = RestorePoint.objects.get()
    for model in (VmBackup, BackupRun, RestorePoint, DataStore):   # the database is lost; the store is not
        model.objects.all().delete()

    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the passphrase of it")
    with pytest.raises(CommandError, match="passphrase"):
        run("add_store", "again", "--path", str(tmp_path / "main"), "--adopt", "--passphrase-file", str(wrong))
    with pytest.raises(CommandError, match="store.json|not a data store|no data store"):
        (tmp_path / "empty").mkdir()
        run("add_store", "again", "--path", str(tmp_path / "empty"), "--adopt", "--passphrase-file", passphrase_file)
    assert not DataStore.objects.exists()

    out = run("add_store", "again", "--path", str(tmp_path / "main"), "--adopt", "--key-file", str(tmp_path / "main.key"))
    assert "adopted: 1 restore point(s) listed" in out
    point = RestorePoint.objects.get()
    assert (point.point_id, point.vm_uuid, point.store.name) == (taken.point_id, taken.vm_uuid, "again")
    assert "All verified restore points are intact" in run("verify", "--store", "again")
    with pytest.raises(CommandError, match="uses .* already"):
        run("add_store", "third", "--path", str(tmp_path / "main"), "--adopt", "--passphrase-file", passphrase_file)
