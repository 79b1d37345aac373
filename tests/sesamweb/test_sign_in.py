import pytest
from django.urls import reverse

from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.models import AuditEvent
from tests.fixtures.users import TEST_PASSWORD

pytestmark = pytest.mark.django_db


def sign_in(client, username, password, address="203.0.113.5"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def test_anonymous_users_are_sent_to_the_sign_in_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_sign_in_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"Sign in to sesamweb" in response.content


def test_signing_in_and_out_is_audited_with_the_source_address(client, operator_user):
    response = sign_in(client, "oscar-operator", TEST_PASSWORD)
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    client.post(reverse("logout"), REMOTE_ADDR="203.0.113.5")
    actions = list(AuditEvent.objects.order_by("sequence").values_list("action", "actor_username", "source"))
    assert actions == [(AuditAction.LOGIN, "oscar-operator", "203.0.113.5"),
                       (AuditAction.LOGOUT, "oscar-operator", "203.0.113.5")]


def test_a_wrong_password_is_refused_and_audited(client, operator_user):
    response = sign_in(client, "oscar-operator", "wrong-password")
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_username, event.outcome) == (AuditAction.LOGIN_FAILED, "oscar-operator", AuditOutcome.FAILURE)


def test_repeated_failures_lock_the_username_even_with_the_right_password(client, operator_user, settings):
    settings.SESAM_LOGIN_MAX_FAILURES = 3
    for attempt in range(3):
        sign_in(client, "oscar-operator", "wrong", address=f"198.51.100.{attempt}")
    response = sign_in(client, "oscar-operator", TEST_PASSWORD, address="198.51.100.99")
    assert response.status_code == 200
    assert b"Too many failed sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_LOCKED, outcome=AuditOutcome.DENIED).count() == 1


def test_repeated_failures_lock_the_source_address_for_every_username(client, operator_user, settings):
    settings.SESAM_LOGIN_MAX_FAILURES = 3
    for name in ("root", "admin", "guest"):
        sign_in(client, name, "guess", address="192.0.2.66")
    assert b"Too many failed" in sign_in(client, "oscar-operator", TEST_PASSWORD, address="192.0.2.66").content
    # Another address is not affected.
    assert sign_in(client, "oscar-operator", TEST_PASSWORD, address="192.0.2.67").status_code == 302


def test_the_lock_expires_after_the_lockout_period(client, operator_user, settings):
    from datetime import timedelta

    from sesamweb.accounts.models import LoginFailure

    settings.SESAM_LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        sign_in(client, "oscar-operator", "wrong")
    LoginFailure.objects.update(created=LoginFailure.objects.first().created - timedelta(seconds=settings.SESAM_LOGIN_LOCKOUT_SECONDS + 1))
    assert sign_in(client, "oscar-operator", TEST_PASSWORD).status_code == 302


def test_a_successful_sign_in_clears_the_username_failures(client, operator_user, settings):
    settings.SESAM_LOGIN_MAX_FAILURES = 3
    sign_in(client, "oscar-operator", "wrong")
    sign_in(client, "oscar-operator", "wrong")
    assert sign_in(client, "oscar-operator", TEST_PASSWORD).status_code == 302
    client.post(reverse("logout"))
    sign_in(client, "oscar-operator", "wrong")
    sign_in(client, "oscar-operator", "wrong")
    assert sign_in(client, "oscar-operator", TEST_PASSWORD).status_code == 302


def test_sign_out_needs_a_post(admin_client):
    assert admin_client.get(reverse("logout")).status_code == 405
