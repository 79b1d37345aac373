"""REST API of restores: permissions, plans as field errors, progress, details, disks."""
import io

import pytest
from django_q.models import OrmQ

from backups.choices import BackupMethod, RunStatus
from backups.formats.vhd import read_vhd_stream
from backups.models_restore import RestoreRun
from backups.restore.plan import run_restore
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from sesamweb.audit.models import AuditEvent

from .conftest import back_up

pytestmark = pytest.mark.slow


@pytest.fixture
def point(vm_named, store):
    return back_up(vm_named("test-vm-2"), store, BackupMethod.NORMAL).restore_point


def test_an_auditor_cannot_request_a_restore(api_client, point, pool):
    response = api_client(Role.AUDITOR).post("/api/restores/", {"point": point.point_id, "target_pool": pool.name},
                                             format="json")
    assert response.status_code == 403
    assert not RestoreRun.objects.exists()


def test_an_operator_requests_a_restore_that_is_queued_then_runs(api_client, point, pool, pool_reader):
    operator = api_client(Role.OPERATOR)
    response = operator.post("/api/restores/", {"point": f"local:{point.point_id}", "target_pool": str(pool.pk),
                                                "name": "from the api", "start_mode": "running"}, format="json")

    assert response.status_code == 202, response.json()
    run = RestoreRun.objects.get(pk=response.json()["id"])
    assert (run.requested_by, run.trigger, run.status) == (operator.user, "api", "queued")
    [queued] = OrmQ.objects.all()
    assert queued.task["func"] == "backups.restore.tasks.run_restore_task" and queued.task["args"] == (run.pk,)
    assert AuditEvent.objects.filter(action="restore", target_id=str(run.pk)).exists()

    run_restore(run.pk)
    status = api_client(Role.AUDITOR).get(f"/api/restores/{run.pk}/").json()
    assert status["status"] == RunStatus.SUCCESS, status["error"]
    assert status["progress"] == 1.0
    ref = pool_reader.vm(status["restored_vm_uuid"])
    assert pool_reader.xenapi.VM.get_name_label(ref) == "from the api"
    assert pool_reader.xenapi.VM.get_power_state(ref) == "Running"


def test_plan_problems_come_back_as_field_errors(api_client, point, pool):
    response = api_client(Role.OPERATOR).post(
        "/api/restores/", {"point": point.point_id, "target_pool": pool.name, "name": "test-vm-1",
                           "identity": "keep"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert "already exists" in body["name"][0]
    assert "still exists" in body["identity"][0]
    assert {(p["step"], p["field"]) for p in body["problems"]} == {("identity", "name"), ("identity", "identity")}
    assert not RestoreRun.objects.exists()


def test_validate_lists_problems_without_starting(api_client, point, pool):
    auditor_cannot = api_client(Role.AUDITOR).post("/api/restores/validate/", {}, format="json")
    response = api_client(Role.OPERATOR).post(
        "/api/restores/validate/", {"point": point.point_id, "target_pool": pool.name, "start_mode": "resume"},
        format="json")

    assert auditor_cannot.status_code == 403
    assert response.status_code == 200
    assert [(p["step"], p["field"]) for p in response.json()] == [("start", "start_mode")]
    assert api_client(Role.OPERATOR).post("/api/restores/validate/", {"point": point.point_id, "target_pool": pool.name},
                                          format="json").json() == []
    assert not RestoreRun.objects.exists()


def test_restore_point_details_describe_the_vm(api_client, point):
    body = api_client(Role.AUDITOR).get(f"/api/restore-points/{point.pk}/details/").json()
    assert body["vm_name"] == "test-vm-2"
    assert [(d["key"], d["userdevice"]) for d in body["disks"]] == [("vbd0", "0")]
    assert body["vifs"][0]["device"] == "0" and body["vifs"][0]["mac"]


def test_a_disk_downloads_raw_and_vhd_equal_to_the_vm_disk(api_client, point, pool_reader):
    expected = pool_reader.raw(pool_reader.disks(point.vm_uuid)["0"])
    operator = api_client(Role.OPERATOR)

    raw = operator.get(f"/api/restore-points/{point.pk}/disks/vbd0/download?format=raw")
    vhd = operator.get(f"/api/restore-points/{point.pk}/disks/vbd0/download?format=vhd")

    assert raw.status_code == 200
    assert int(raw["Content-Length"]) == len(expected)
    assert b"".join(raw.streaming_content) == expected
    assert vhd.status_code == 200 and vhd["Content-Type"] == "application/vhd"
    body = b"".join(vhd.streaming_content)
    assert int(vhd["Content-Length"]) == len(body)
    size, pieces = read_vhd_stream(io.BytesIO(body))
    disk = bytearray(size)
    for offset, data in pieces:
        disk[offset:offset + len(data)] = data
    assert bytes(disk) == expected
    assert AuditEvent.objects.filter(action="restore", message__contains="downloaded as raw").exists()


def test_an_auditor_cannot_download_a_disk(api_client, point):
    response = api_client(Role.AUDITOR).get(f"/api/restore-points/{point.pk}/disks/vbd0/download?format=raw")
    assert response.status_code == 403


def test_an_unknown_disk_or_format_is_a_clear_error(api_client, point):
    operator = api_client(Role.OPERATOR)
    assert "has no disk" in str(operator.get(f"/api/restore-points/{point.pk}/disks/vbd7/download").json())
    assert "format must be" in str(operator.get(f"/api/restore-points/{point.pk}/disks/vbd0/download?format=qcow2").json())


def test_a_disk_restores_as_a_new_vdi(api_client, point, pool, pool_reader):
    expected = pool_reader.raw(pool_reader.disks(point.vm_uuid)["0"])
    sr = pool.srs.get(name="Shared NFS storage")
    response = api_client(Role.OPERATOR).post("/api/restores/disk/", {"point": point.point_id, "disk": "vbd0",
                                                                     "sr": sr.uuid, "name": "old disk"}, format="json")
    assert response.status_code == 202, response.json()

    run = run_restore(response.json()["id"])

    assert run.status == RunStatus.SUCCESS, run.error
    assert pool_reader.raw(run.restored_vdi_uuid) == expected
    vdi = pool_reader.xenapi.VDI.get_by_uuid(run.restored_vdi_uuid)
    assert pool_reader.xenapi.VDI.get_name_label(vdi) == "old disk"
    assert pool_reader.xenapi.VDI.get_VBDs(vdi) == []
    assert "sesamweb_restore" not in pool_reader.xenapi.VDI.get_other_config(vdi)


def test_cancelling_a_finished_restore_is_a_conflict_the_schema_declares(api_client, tmp_path, db):
    store = create_store(name="nas", path=str(tmp_path / "store"), passphrase="correct horse battery staple")
    run = RestoreRun.objects.create(store=store, store_point_id="x/1", status=RunStatus.SUCCESS)
    client = api_client(Role.OPERATOR)
    response = client.post(f"/api/restores/{run.pk}/cancel/")
    assert response.status_code == 409 and "already finished" in response.json()["detail"]
    schema = client.get("/api/schema/", {"format": "json"}).json()
    assert "409" in schema["paths"]["/api/restores/{id}/cancel/"]["post"]["responses"]
