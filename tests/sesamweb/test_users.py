import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from sesamweb.accounts.roles import Role, user_role
from sesamweb.accounts.services import must_change_password
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.models import AuditEvent
from tests.fixtures.users import TEST_PASSWORD

pytestmark = pytest.mark.django_db
User = get_user_model()

NEW_USER = {"username": "olga", "first_name": "Olga", "last_name": "Ops", "email": "olga@example.test",
            "role": "operator", "password": "a-long-enough-password-7", "must_change_password": "on"}


def test_an_administrator_creates_an_operator_through_the_users_page(admin_client):
    assert admin_client.get(reverse("accounts:user_create")).status_code == 200
    response = admin_client.post(reverse("accounts:user_create"), NEW_USER, REMOTE_ADDR="10.1.1.1")
    assert response.status_code == 302
    olga = User.objects.get(username="olga")
    assert user_role(olga) == Role.OPERATOR and olga.check_password(NEW_USER["password"])
    assert must_change_password(olga)
    event = AuditEvent.objects.get(action=AuditAction.CREATE)
    assert (event.actor_username, event.source, event.target_repr) == ("alice-admin", "10.1.1.1", "olga")
    assert event.after["role"] == "operator" and "password" not in event.after
    assert b"olga" in admin_client.get(reverse("accounts:user_list")).content


def test_the_create_form_starts_with_the_least_privileged_role(admin_client):
    form = admin_client.get(reverse("accounts:user_create")).context["form"]
    assert form["role"].value() == Role.AUDITOR


def test_the_create_form_explains_what_is_wrong(admin_client, operator_user):
    response = admin_client.post(reverse("accounts:user_create"), {**NEW_USER, "username": "oscar-operator", "password": "short"})
    assert response.status_code == 200
    assert b"A user with this name already exists." in response.content
    assert b"This password is too short" in response.content
    assert b'aria-invalid="true"' in response.content


def test_an_administrator_changes_a_role_and_deactivates_a_user(admin_client, operator_user):
    response = admin_client.post(reverse("accounts:user_update", args=[operator_user.pk]),
                                 {"role": "auditor", "is_active": "", "email": operator_user.email})
    assert response.status_code == 302
    operator_user.refresh_from_db()
    assert not operator_user.is_active
    event = AuditEvent.objects.get(action=AuditAction.UPDATE)
    assert event.before["role"] == "operator" and event.after["role"] == "auditor"
    assert ("is_active", True, False) in event.diff


def test_an_administrator_cannot_lock_themselves_out(admin_client, admin_user):
    response = admin_client.post(reverse("accounts:user_update", args=[admin_user.pk]), {"role": "operator", "is_active": ""})
    assert response.status_code == 200
    assert b"You cannot deactivate your own account." in response.content
    assert b"You cannot remove your own administrator role." in response.content


@pytest.mark.parametrize("name", ["user_list", "user_create"])
def test_operators_and_auditors_cannot_manage_users(operator_client, auditor_client, name):
    assert operator_client.get(reverse(f"accounts:{name}")).status_code == 403
    assert auditor_client.get(reverse(f"accounts:{name}")).status_code == 403


def test_an_operator_cannot_create_a_user_by_posting(operator_client):
    assert operator_client.post(reverse("accounts:user_create"), NEW_USER).status_code == 403
    assert not User.objects.filter(username="olga").exists()


def test_anonymous_users_are_redirected_from_user_management(client, admin_user):
    response = client.get(reverse("accounts:user_update", args=[admin_user.pk]))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_a_new_user_must_change_the_initial_password_before_anything_else(client, admin_client):
    admin_client.post(reverse("accounts:user_create"), NEW_USER)
    response = client.post(reverse("login"), {"username": "olga", "password": NEW_USER["password"]})
    assert response["Location"] == reverse("accounts:password_change")
    assert client.get("/").status_code == 302  # still forced
    response = client.post(reverse("accounts:password_change"), {
        "old_password": NEW_USER["password"], "new_password1": "my-own-secret-phrase-42", "new_password2": "my-own-secret-phrase-42"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert AuditEvent.objects.filter(action=AuditAction.PASSWORD_CHANGE, actor_username="olga").exists()


def test_a_user_without_a_role_can_sign_in_but_sees_no_console(client, norole_user):
    client.post(reverse("login"), {"username": norole_user.username, "password": TEST_PASSWORD})
    assert client.get("/").status_code == 403
    assert client.get(reverse("accounts:password_change")).status_code == 200


def test_create_admin_prints_a_one_time_password(db, capsys):
    from django.core.management import call_command

    call_command("create_admin", "root", "--email", "root@example.test")
    output = capsys.readouterr().out
    password = output.split("One-time password: ")[1].split()[0]
    root = User.objects.get(username="root")
    assert root.check_password(password) and user_role(root) == Role.ADMINISTRATOR and must_change_password(root)
    assert AuditEvent.objects.get(action=AuditAction.CREATE).source == "cli"
    call_command("create_admin", "root", "--if-missing")  # idempotent for make demo
    from django.core.management.base import CommandError
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_admin", "root")


def test_create_admin_resets_a_lost_password_to_a_new_one_time_password(db, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    call_command("create_admin", "root")
    capsys.readouterr()
    call_command("create_admin", "root", "--reset-password")
    password = capsys.readouterr().out.split("New one-time password for root: ")[1].split()[0]
    root = User.objects.get(username="root")
    assert root.check_password(password) and must_change_password(root)
    assert AuditEvent.objects.filter(action=AuditAction.PASSWORD_CHANGE, source="cli").exists()
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("create_admin", "nobody", "--reset-password")


def test_an_administrator_sets_a_new_password_that_must_be_changed(admin_client, operator_user):
    url = reverse("accounts:user_password", args=[operator_user.pk])
    assert b"This password is too short" in admin_client.post(url, {"new_password": "short"}).content
    assert admin_client.post(url, {"new_password": "fresh-temporary-pass-3"}).status_code == 302
    operator_user.refresh_from_db()
    assert operator_user.check_password("fresh-temporary-pass-3") and must_change_password(operator_user)
    event = AuditEvent.objects.get(action=AuditAction.PASSWORD_CHANGE)
    assert event.actor_username == "alice-admin" and "reset by an administrator" in event.message


def test_an_operator_cannot_set_passwords(operator_client, admin_user):
    url = reverse("accounts:user_password", args=[admin_user.pk])
    assert operator_client.post(url, {"new_password": "fresh-temporary-pass-3"}).status_code == 403


def test_a_user_who_must_change_the_password_cannot_use_the_api_until_they_do(client, db):
    from sesamweb.accounts.models import ApiToken
    from sesamweb.accounts.services import create_user

    create_user("root", role=Role.ADMINISTRATOR, password=NEW_USER["password"], must_change_password=True)
    client.post(reverse("login"), {"username": "root", "password": NEW_USER["password"]})
    minted = client.post("/api/tokens/", {"name": "forever"}, content_type="application/json")
    assert minted.status_code == 403 and "change your password" in minted.json()["detail"]
    assert not ApiToken.objects.exists()
    assert client.get("/api/pools/").status_code == 403
    client.post(reverse("accounts:password_change"), {
        "old_password": NEW_USER["password"], "new_password1": "my-own-secret-phrase-42",
        "new_password2": "my-own-secret-phrase-42"})
    assert client.post("/api/tokens/", {"name": "script"}, content_type="application/json").status_code == 201
    assert client.get("/api/pools/").status_code == 200


def test_a_token_of_a_user_whose_password_was_reset_waits_for_the_new_password(api_client, admin_client):
    operator = api_client(Role.OPERATOR)
    assert operator.get("/api/pools/").status_code == 200
    admin_client.post(reverse("accounts:user_password", args=[operator.user.pk]),
                      {"new_password": "fresh-temporary-pass-3"})
    assert must_change_password(operator.user)
    assert operator.get("/api/pools/").status_code == 403
