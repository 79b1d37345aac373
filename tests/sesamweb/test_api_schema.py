"""The OpenAPI schema tells the truth: real responses (nulls included) validate against it,
and the error answers every endpoint can give (400, 401, 403, 404) are declared."""
import pytest
from openapi_schema_validator import OAS30Validator

from backups.choices import BackupMethod, Trigger
from backups.models_restore import RestoreRun
from backups.services import request_backup
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from tests.fixtures.users import make_user
from xenpools.models import VM, Pool


@pytest.fixture
def admin_api(api_client):
    return api_client(Role.ADMINISTRATOR)


@pytest.fixture
def schema(admin_api):
    return admin_api.get("/api/schema/", {"format": "json"}).json()


@pytest.fixture
def rows_with_nulls(tmp_path, db):
    """A halted VM (no host), a scheduled backup, a restore nobody requested and a user
    without a role."""
    pool = Pool.objects.create(name="lab", address="127.0.0.1", uuid="pool-uuid", product_version="8.2.1")
    vm = VM.objects.create(pool=pool, uuid="11111111-1111-1111-1111-111111111111", ref="OpaqueRef:1",
                           name="web-01", power_state="Halted", host=None)
    store = create_store(name="nas", path=str(tmp_path / "store"), passphrase="correct horse battery staple")
    request_backup(vm=vm, store=store, method=BackupMethod.NORMAL, trigger=Trigger.SCHEDULE, user=None)
    RestoreRun.objects.create(store=store, store_point_id=f"{vm.uuid}/x", target_pool=pool, requested_by=None)
    make_user("nora-norole")


def assert_valid(schema, response_schema, body, where):
    validator = OAS30Validator({**response_schema, "components": schema["components"]})
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, (where, errors[:5])


def test_list_answers_with_nulls_validate_against_the_schema(admin_api, schema, rows_with_nulls):
    for path, field in (("/api/vms/", "host_name"), ("/api/runs/", "requested_by"), ("/api/restores/", "requested_by")):
        assert admin_api.get(path).json()["results"][0][field] is None  # the nulls this test is about
    assert [u["role"] for u in admin_api.get("/api/users/").json()["results"] if u["username"] == "nora-norole"] == [None]
    checked = 0
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if "{" in path or not get or "application/json" not in get["responses"].get("200", {}).get("content", {}):
            continue
        response = admin_api.get(path)
        assert response.status_code == 200, path
        assert_valid(schema, get["responses"]["200"]["content"]["application/json"]["schema"], response.json(), path)
        checked += 1
        detail = schema["paths"].get(f"{path}{{id}}/", {}).get("get")
        results = response.json().get("results") or []
        if detail and results and "id" in results[0]:
            detail_path = f"{path}{results[0]['id']}/"
            response = admin_api.get(detail_path)
            assert response.status_code == 200, detail_path
            assert_valid(schema, detail["responses"]["200"]["content"]["application/json"]["schema"],
                         response.json(), detail_path)
            checked += 1
    assert checked >= 15


def test_every_operation_declares_its_error_answers(schema):
    missing = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            expected = {"401", "403"}
            if "{" in path:
                expected.add("404")
            if method in ("post", "put", "patch") or any(p["in"] == "query" for p in operation.get("parameters", [])):
                expected.add("400")
            missing += [f"{method.upper()} {path} {code}" for code in sorted(expected - set(operation["responses"]))]
    assert not missing, missing[:20]


def test_error_answers_have_a_detail_or_field_messages(schema):
    operation = schema["paths"]["/api/pools/{id}/"]["get"]
    not_found = operation["responses"]["404"]["content"]["application/json"]["schema"]
    assert_valid(schema, not_found, {"detail": "No Pool matches the given query."}, "404")
    bad = schema["paths"]["/api/backups/"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert_valid(schema, bad, {"store": ["No data store '¹'."], "detail": ["busy"]}, "400")


def test_a_role_cannot_be_written_as_null(admin_api, db):
    """null is how a user without a role reads; a user is created or changed with a role."""
    response = admin_api.post("/api/users/", {"username": "nobody", "role": None, "password": "x-Long-enough-9"},
                              format="json")
    assert response.status_code == 400 and "role" in response.json()
    user = make_user("oscar", Role.OPERATOR)
    response = admin_api.patch(f"/api/users/{user.pk}/", {"role": None}, format="json")
    assert response.status_code == 400 and "role" in response.json()


def test_a_refused_search_term_is_answered_like_every_other_input_error(admin_api):
    """A NUL character in ?search= gets {"search": [...]} (ValidationErrors), not a bare list."""
    response = admin_api.get("/api/tokens/", {"search": "a\x00b"})
    assert response.status_code == 400
    assert response.json() == {"search": ["Null characters are not allowed."]}
