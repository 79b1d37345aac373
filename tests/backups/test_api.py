"""REST API of backups: the same permissions as the pages, secrets never returned, the
backup POST queued on the ORM broker through backups.services.request_backup."""
import pytest
from django.utils import timezone
from django_q.models import OrmQ

from backups.choices import BackupKind, BackupMethod, RunStatus, Trigger
from backups.models import BackupRun, DataStore, RestorePoint
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from xenpools.models import VM, Pool

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def web(db):
    pool = Pool.objects.create(name="lab", address="127.0.0.1", uuid="pool-uuid", product_version="8.2.1")
    return VM.objects.create(pool=pool, uuid="11111111-1111-1111-1111-111111111111", ref="OpaqueRef:1",
                             name="web-01", power_state="Running")


@pytest.fixture
def data_store(tmp_path, db):
    return create_store(name="nas", path=str(tmp_path / "store"), passphrase=PASSPHRASE)


def test_every_role_lists_stores_without_any_secret(api_client, data_store):
    for role in (Role.AUDITOR, Role.OPERATOR, Role.ADMINISTRATOR):
        response = api_client(role).get("/api/stores/")
        assert response.status_code == 200
        [store] = response.json()["results"]
        assert store["name"] == "nas" and store["encrypted"] is True and store["key_exported"] is False
        for secret in ("passphrase", "s3_secret", "s3_access_key", "key_encrypted", "s3_secret_encrypted"):
            assert secret not in store
        assert data_store.key_encrypted not in response.content.decode()


def test_only_an_administrator_creates_a_store(api_client, tmp_path):
    body = {"name": "api-store", "path": str(tmp_path / "api-store"), "passphrase": PASSPHRASE}
    assert api_client(Role.OPERATOR).post("/api/stores/", body, format="json").status_code == 403
    assert api_client(Role.AUDITOR).post("/api/stores/", body, format="json").status_code == 403
    response = api_client(Role.ADMINISTRATOR).post("/api/stores/", body, format="json")
    assert response.status_code == 201, response.json()
    assert "passphrase" not in response.json()
    assert DataStore.objects.get(name="api-store").data_key()


def test_store_creation_errors_are_400_with_the_reason(api_client, tmp_path):
    admin = api_client(Role.ADMINISTRATOR)
    response = admin.post("/api/stores/", {"name": "a", "path": str(tmp_path / "a"), "passphrase": "short"}, format="json")
    assert response.status_code == 400 and "passphrase" in response.json()
    response = admin.post("/api/stores/", {"name": "b", "path": "/no-such-parent/b", "passphrase": PASSPHRASE},
                          format="json")
    assert response.status_code == 400 and "is the share mounted" in str(response.json())
    assert not DataStore.objects.exists()


def test_an_operator_posts_a_backup_and_gets_the_queued_run(api_client, web, data_store):
    operator = api_client(Role.OPERATOR)
    response = operator.post("/api/backups/", {"vm": web.uuid, "store": "nas", "method": "offline",
                                               "incremental": True, "options": {"restart_after_snapshot": False}},
                             format="json")
    assert response.status_code == 202, response.json()
    run = BackupRun.objects.get(pk=response.json()["id"])
    assert run.trigger == Trigger.API and run.requested_by == operator.user
    vm_backup = run.vm_backups.get()
    assert (vm_backup.method, vm_backup.incremental, vm_backup.restart_after_snapshot) == ("offline", True, False)
    assert response.json()["vm_backups"][0]["status"] == "queued"
    [queued] = OrmQ.objects.all()
    assert queued.task["func"] == "backups.tasks.run_vm_backup_task" and queued.task["args"] == (vm_backup.pk,)


def test_an_auditor_cannot_post_a_backup(api_client, web, data_store):
    response = api_client(Role.AUDITOR).post("/api/backups/", {"vm": web.uuid, "store": data_store.pk,
                                                               "method": "normal"}, format="json")
    assert response.status_code == 403
    assert not BackupRun.objects.exists()


def test_a_backup_post_with_bad_input_says_what_is_wrong(api_client, web, data_store):
    operator = api_client(Role.OPERATOR)
    response = operator.post("/api/backups/", {"vm": "nope", "store": "missing", "method": "sideways"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"vm", "store", "method"}
    operator.post("/api/backups/", {"vm": web.uuid, "store": str(data_store.pk), "method": "normal"}, format="json")
    again = operator.post("/api/backups/", {"vm": web.uuid, "store": str(data_store.pk), "method": "normal"}, format="json")
    assert again.status_code == 400 and "a backup of web-01 is already queued (run #" in str(again.json())


def test_runs_are_read_by_all_and_cancelled_by_operators(api_client, web, data_store):
    api_client(Role.OPERATOR).post("/api/backups/", {"vm": web.uuid, "store": "nas", "method": "normal"}, format="json")
    run = BackupRun.objects.get()
    listing = api_client(Role.AUDITOR).get("/api/runs/").json()["results"]
    assert [r["id"] for r in listing] == [run.pk]
    assert listing[0]["vm_backups"][0]["vm_name"] == "web-01"
    assert api_client(Role.AUDITOR).post(f"/api/runs/{run.pk}/cancel/").status_code == 403
    response = api_client(Role.OPERATOR).post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == RunStatus.CANCELLED
    assert api_client(Role.OPERATOR).post(f"/api/runs/{run.pk}/cancel/").status_code == 409


def test_restore_points_filter_by_vm_store_method_and_verify_state(api_client, data_store, tmp_path):
    other = create_store(name="other", path=str(tmp_path / "other"), encrypted=False)
    for store, uuid, method, state in [(data_store, "aaa", "normal", "ok"), (data_store, "bbb", "memory", "damaged"),
                                       (other, "aaa", "offline", "unverified")]:
        RestorePoint.objects.create(store=store, point_id=f"{uuid}/{method}", vm_uuid=uuid, vm_name=uuid,
                                    taken_at=timezone.now(), method=method, kind=BackupKind.FULL, verify_state=state)
    auditor = api_client(Role.AUDITOR)

    def ids(**query):
        return sorted(p["point_id"] for p in auditor.get("/api/restore-points/", query).json()["results"])

    assert ids(vm_uuid="aaa") == ["aaa/normal", "aaa/offline"]
    assert ids(store=other.pk) == ["aaa/offline"]
    assert ids(method=BackupMethod.MEMORY) == ["bbb/memory"]
    assert ids(verify_state="damaged") == ["bbb/memory"]


def test_the_openapi_schema_describes_the_backup_endpoints(api_client):
    response = api_client(Role.AUDITOR).get("/api/schema/", {"format": "json"})
    paths = response.json()["paths"]
    for path in ("/api/stores/", "/api/backups/", "/api/runs/{id}/cancel/", "/api/restore-points/"):
        assert path in paths


@pytest.mark.parametrize("store_name", ["¹", "²³", "9" * 30])
def test_a_backup_post_naming_the_store_by_a_non_ascii_number_is_a_400(api_client, web, data_store, store_name):
    response = api_client(Role.OPERATOR).post(
        "/api/backups/", {"vm": web.uuid, "store": store_name, "method": BackupMethod.NORMAL}, format="json")
    assert response.status_code == 400 and "store" in response.json()
