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


def test_the_xva_download_resumes_with_a_range_request_and_is_the_same_file(vm_named, store, api_client, tmp_path):
    point = back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL).restore_point
    url = f"/api/restore-points/{point.pk}/xva"
    operator = api_client("operator")

    whole = operator.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    full = b"".join(whole.streaming_content)
    assert len(full) == int(whole["Content-Length"]) and whole["Content-Disposition"].endswith('.xva"')
    call_command("export_xva", point.point_id, str(tmp_path / "cli.xva"))
    assert (tmp_path / "cli.xva").read_bytes() == full            # the same file by every way

    broken_at = len(full) // 3 + 1234                              # the connection broke here
    rest = operator.get(url, HTTP_RANGE=f"bytes={broken_at}-", HTTP_IF_RANGE=whole["ETag"])
    assert rest.status_code == 206 and rest["Content-Range"] == f"bytes {broken_at}-{len(full) - 1}/{len(full)}"
    assert full[:broken_at] + b"".join(rest.streaming_content) == full
    middle = operator.get(url, HTTP_RANGE="bytes=100-199")
    assert b"".join(middle.streaming_content) == full[100:200]

    assert operator.get(url, HTTP_RANGE=f"bytes={len(full)}-").status_code == 416
    # A changed file (another ETag) is sent whole, not patched together.
    assert operator.get(url, HTTP_RANGE="bytes=10-", HTTP_IF_RANGE='"other"').status_code == 200
    assert api_client("auditor").get(url).status_code == 403        # a VM's content needs OPERATE
    # Each whole download audited, not the resumptions of one.
    assert AuditEvent.objects.filter(message__contains="downloaded as an XVA file").count() == 2
