import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from sesamweb.accounts.models import ApiToken, hash_token
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_a_user_creates_a_token_on_the_account_page_and_sees_it_once(auditor_client):
    response = auditor_client.post(reverse("accounts:my_account"), {"name": "report script"})
    assert response.status_code == 200
    key = response.context["new_key"]
    token = ApiToken.objects.get(name="report script")
    assert token.key_hash == hash_token(key) and key not in token.key_hash
    assert key.encode() not in auditor_client.get(reverse("accounts:my_account")).content  # never shown again
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_CREATE).exists()


def test_the_token_authenticates_api_calls_with_the_users_role(auditor_client):
    key = auditor_client.post(reverse("accounts:my_account"), {"name": "t"}).context["new_key"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/audit-events/").status_code == 200
    assert api.get("/api/users/").status_code == 403  # an auditor, not an administrator


def test_a_revoked_token_stops_working(auditor_client):
    key = auditor_client.post(reverse("accounts:my_account"), {"name": "t"}).context["new_key"]
    token = ApiToken.objects.get()
    assert auditor_client.post(reverse("accounts:token_revoke", args=[token.pk])).status_code == 302
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = api.get("/api/audit-events/")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKE).exists()


def test_a_user_cannot_revoke_someone_elses_token(auditor_client, operator_user):
    other, _ = ApiToken.issue(operator_user, "theirs")
    assert auditor_client.post(reverse("accounts:token_revoke", args=[other.pk])).status_code == 404
    assert ApiToken.objects.filter(pk=other.pk).exists()


def test_tokens_are_managed_through_the_api_too(api_client):
    api = api_client("operator")
    response = api.post("/api/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 201 and response.data["key"].startswith("sesam_")
    listed = api.get("/api/tokens/").data["results"]
    assert {t["name"] for t in listed} == {"tests", "ci"} and all("key" not in t for t in listed)
    assert api.delete(f"/api/tokens/{response.data['id']}/").status_code == 204


def test_unknown_tokens_from_an_address_are_slowed_down(settings, db):
    settings.SESAM_LOGIN_MAX_FAILURES = 3
    api = APIClient(REMOTE_ADDR="192.0.2.200")
    api.credentials(HTTP_AUTHORIZATION="Token sesam_guess")
    assert [api.get("/api/audit-events/").status_code for _ in range(3)] == [401, 401, 401]
    assert api.get("/api/audit-events/").status_code == 429
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED, source="192.0.2.200").count() == 3


def test_unknown_tokens_lock_neither_a_valid_token_nor_the_sign_in_page(settings, api_client, operator_user, client):
    from tests.fixtures.users import TEST_PASSWORD

    settings.SESAM_LOGIN_MAX_FAILURES = 3
    guesser = APIClient(REMOTE_ADDR="192.0.2.200")
    guesser.credentials(HTTP_AUTHORIZATION="Token sesam_guess")
    for _ in range(6):
        guesser.get("/api/audit-events/")
    admin = api_client("administrator")
    assert admin.get("/api/audit-events/", REMOTE_ADDR="192.0.2.200").status_code == 200
    response = client.post(reverse("login"), {"username": "oscar-operator", "password": TEST_PASSWORD},
                           REMOTE_ADDR="192.0.2.200")
    assert response.status_code == 302


def test_wrong_passwords_do_not_slow_down_tokens(settings, api_client, client, operator_user):
    settings.SESAM_LOGIN_MAX_FAILURES = 2
    for _ in range(4):
        client.post(reverse("login"), {"username": "oscar-operator", "password": "wrong"}, REMOTE_ADDR="192.0.2.201")
    guesser = APIClient(REMOTE_ADDR="192.0.2.201")
    guesser.credentials(HTTP_AUTHORIZATION="Token sesam_guess")
    assert guesser.get("/api/audit-events/").status_code == 401


def test_anonymous_api_calls_get_401(client, db):
    assert client.get("/api/audit-events/").status_code == 401
    assert client.get("/api/users/").status_code == 401


def test_users_api_is_for_administrators_only(api_client):
    admin, operator, auditor = api_client("administrator"), api_client("operator"), api_client("auditor")
    body = {"username": "ned", "role": "auditor", "password": "a-long-enough-password-7"}
    assert operator.get("/api/users/").status_code == 403
    assert auditor.post("/api/users/", body, format="json").status_code == 403
    created = admin.post("/api/users/", body, format="json")
    assert created.status_code == 201 and created.data["role"] == "auditor" and "password" not in created.data
    changed = admin.patch(f"/api/users/{created.data['id']}/", {"role": "operator", "is_active": False}, format="json")
    assert changed.status_code == 200 and changed.data["role"] == "operator" and changed.data["is_active"] is False
    assert admin.delete(f"/api/users/{created.data['id']}/").status_code == 405  # deactivate, never delete


def test_the_users_api_validates_its_input(api_client):
    admin = api_client("administrator")
    response = admin.post("/api/users/", {"username": "ned", "role": "boss", "password": "x"}, format="json")
    assert response.status_code == 400
    assert "role" in response.data and "password" in response.data
