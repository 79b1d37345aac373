"""A restore point exported as a standard XVA file (backups/restore/export.py, manage.py
export_xva): the pool's own /import takes it back with the same disk bytes, and Debian's
xva-img unpacks its disks to the same bytes, so no sesamweb is needed to use it."""
import shutil
import subprocess
import tarfile

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.choices import BackupMethod
from backups.formats.xva import parse_ova_xml
from backups.restore.engine import _put
from backups.restore.streams import Upload
from sesamweb.audit.models import AuditEvent
from tests.backups.formats.test_xva_reader import need_tool
from xenpools.connection import PoolConnection

from .conftest import back_up, restored_disks

pytestmark = pytest.mark.slow


def test_an_exported_xva_imports_back_and_unpacks_with_xva_img_to_the_same_disks(vm_named, store, pool,
                                                                                 pool_reader, tmp_path):
    need_tool("xva-img")
    vm = vm_named("test-vm-1")
    expected = restored_disks(pool_reader, vm.uuid)
    point = back_up(vm, store, BackupMethod.NORMAL).restore_point
    xva = tmp_path / "test-vm-1.xva"

    call_command("export_xva", point.point_id, str(xva))

    assert AuditEvent.objects.filter(message__contains="exported as an XVA file").exists()
    with pytest.raises(CommandError, match="exists already"):
        call_command("export_xva", point.point_id, str(xva))

    # The pool imports it as `xe vm-import` does: a new VM with the disks of the restore point.
    data = xva.read_bytes()
    with PoolConnection.open(pool) as conn:
        result = _put(conn, "/import", {"restore": "false"}, Upload(len(data), iter([data])), "import of an export")
    new_ref = result[0] if isinstance(result, list) else str(result).split(",")[0]
    new_uuid = pool_reader.xenapi.VM.get_uuid(new_ref)
    assert new_uuid != vm.uuid
    assert restored_disks(pool_reader, new_uuid) == expected

    # xva-img, which knows nothing of sesamweb, unpacks every disk to the same bytes.
    unpacked = tmp_path / "unpacked"
    with tarfile.open(xva) as tar:
        tar.extractall(unpacked, filter="data")
    meta = parse_ova_xml((unpacked / "ova.xml").read_bytes())
    found = {}
    for disk in meta.disks():
        raw = tmp_path / f"{disk.userdevice}.raw"
        subprocess.run(["xva-img", "disk-export", str(unpacked / disk.ref), str(raw)], check=True, capture_output=True)
        found[disk.userdevice] = raw.read_bytes()
    assert found == expected
    shutil.rmtree(unpacked)
