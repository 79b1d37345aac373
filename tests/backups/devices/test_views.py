"""Device server pages: administrators create a registration token (shown once, never again),
revoke tokens and device servers and give stores to them; other roles only read."""
import pytest
from django.test import Client
from rest_framework.test import APIClient

from backups.devices.models import DeviceServer, RegistrationToken
from backups.devices.registration import heartbeat
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from sesamweb.audit.models import AuditEvent
from tests.fixtures.users import make_user

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def admin(db):
    client = Client()
    client.force_login(make_user("admin", Role.ADMINISTRATOR))
    return client


def test_a_token_is_shown_once_and_never_again(admin):
    answer = admin.post("/backups/device-servers/tokens/add/", {"name": "branch", "site": "Hamburg", "hours": "2"})
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    row = RegistrationToken.objects.get()
    token = answer.context["token"]
    assert RegistrationToken.hash(token) == row.token_hash and token in answer.content.decode()
    assert f"device_server register --token {token}" in answer.content.decode()
    listing = admin.get("/backups/device-servers/").content.decode()
    assert "branch" in listing and token not in listing
    api = APIClient()
    api.force_authenticate(make_user("api-admin", Role.ADMINISTRATOR))
    assert token not in api.get("/api/device-registration-tokens/").content.decode()
    assert AuditEvent.objects.filter(action="token_create", message__contains="device server branch").exists()


def test_a_bad_token_form_answers_400_with_the_reason(admin, make_device_server):
    make_device_server("branch")
    answer = admin.post("/backups/device-servers/tokens/add/", {"name": "branch", "hours": "2"})
    assert answer.status_code == 400 and "a device server named branch exists already" in answer.content.decode()


def test_revoking_a_token_and_a_device_server_from_the_pages(admin, make_device_server):
    server = make_device_server("branch")
    heartbeat("branch")
    admin.post("/backups/device-servers/tokens/add/", {"name": "plant", "hours": "2"})
    row = RegistrationToken.objects.get(name="plant")
    admin.post(f"/backups/device-servers/tokens/{row.pk}/revoke/")
    assert RegistrationToken.objects.get(pk=row.pk).state() == "revoked"

    page = admin.get(server.get_absolute_url()).content.decode()
    assert "Up" in page and "device-branch" in page and "Hamburg" in page
    admin.post(f"/backups/device-servers/{server.pk}/revoke/")
    assert DeviceServer.objects.get(pk=server.pk).is_revoked
    assert 'data-device-state="revoked"' in admin.get(server.get_absolute_url()).content.decode()


def test_giving_a_store_to_a_device_server_from_its_page(admin, make_device_server, tmp_path):
    server = make_device_server("branch")
    store = create_store(name="branch-nas", path=str(tmp_path / "s"), passphrase=PASSPHRASE)
    answer = admin.post(f"/backups/device-servers/{server.pk}/stores/", {"store": store.pk})
    assert answer.status_code == 302
    store.refresh_from_db()
    assert store.device_server == server
    assert "branch-nas" in admin.get(server.get_absolute_url()).content.decode()
    event = AuditEvent.objects.filter(action="update", target_type="backups.datastore").latest("sequence")
    assert "moved from the console's workers to branch" in event.message


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.AUDITOR])
def test_other_roles_read_but_change_nothing(db, make_device_server, role):
    server = make_device_server("branch")
    client = Client()
    client.force_login(make_user(f"u-{role}", role))
    assert client.get("/backups/device-servers/").status_code == 200
    assert client.get(server.get_absolute_url()).status_code == 200
    assert client.post(f"/backups/device-servers/{server.pk}/revoke/").status_code == 403
    assert client.post("/backups/device-servers/tokens/add/", {"name": "x", "hours": "1"}).status_code == 403
    assert not DeviceServer.objects.get(pk=server.pk).is_revoked


def test_the_api_creates_a_token_once_lists_servers_and_revokes(db, make_device_server):
    server = make_device_server("branch")
    api = APIClient()
    api.force_authenticate(make_user("api-admin", Role.ADMINISTRATOR))
    created = api.post("/api/device-registration-tokens/", {"name": "plant", "site": "Linz", "hours": 1}, format="json")
    assert created.status_code == 201 and len(created.json()["token"]) > 30
    row = RegistrationToken.objects.get(name="plant")
    assert "token" not in api.get(f"/api/device-registration-tokens/{row.pk}/").json()
    listed = api.get("/api/device-servers/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [(r["name"], r["cluster_name"], r["status"]) for r in rows] == [("branch", "device-branch", "down")]
    assert "public_key" not in rows[0]
    changed = api.patch(f"/api/device-servers/{server.pk}/", {"max_streams": 8, "name": "renamed"}, format="json")
    assert changed.status_code == 200 and (changed.json()["max_streams"], changed.json()["name"]) == (8, "branch")
    assert AuditEvent.objects.filter(action="update", message="device server branch changed").exists()
    assert api.post(f"/api/device-servers/{server.pk}/revoke/").json()["status"] == "revoked"
    assert api.post(f"/api/device-servers/{server.pk}/revoke/").status_code == 409
