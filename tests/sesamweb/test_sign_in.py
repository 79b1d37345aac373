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


def test_repeated_failures_lock_the_name_from_that_address_even_with_the_right_password(client, operator_user, settings):
    settings.SESAM_LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        sign_in(client, "oscar-operator", "wrong", address="198.51.100.7")
    response = sign_in(client, "oscar-operator", TEST_PASSWORD, address="198.51.100.7")
    assert response.status_code == 200
    assert b"Too many failed sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_LOCKED, outcome=AuditOutcome.DENIED).count() == 1


def test_failures_from_one_address_do_not_lock_the_user_out_elsewhere(client, operator_user, settings):
    settings.SESAM_LOGIN_MAX_FAILURES = 5
    for _ in range(8):
        sign_in(client, "oscar-operator", "guess", address="192.0.2.66")
    assert b"Too many failed" in sign_in(client, "oscar-operator", TEST_PASSWORD, address="192.0.2.66").content
    assert sign_in(client, "oscar-operator", TEST_PASSWORD, address="192.0.2.67").status_code == 302


def test_failures_for_other_names_do_not_lock_a_user_at_the_same_address(client, operator_user, settings):
    settings.SESAM_LOGIN_MAX_FAILURES = 3
    for name in ("root", "admin", "guest", "root", "admin", "guest"):
        sign_in(client, name, "guess", address="192.0.2.66")
    assert sign_in(client, "oscar-operator", TEST_PASSWORD, address="192.0.2.66").status_code == 302


def age_failures(seconds):
    from datetime import timedelta

    from sesamweb.accounts.models import LoginFailure

    for failure in LoginFailure.objects.all():
        LoginFailure.objects.filter(pk=failure.pk).update(created=failure.created - timedelta(seconds=seconds))


def test_each_failure_past_the_limit_doubles_the_delay(client, operator_user, settings):
    from sesamweb.accounts.throttling import PASSWORD, current_lockout

    settings.SESAM_LOGIN_MAX_FAILURES = 2
    settings.SESAM_LOGIN_DELAY_SECONDS = 10
    settings.SESAM_LOGIN_LOCKOUT_SECONDS = 35
    sign_in(client, "oscar-operator", "wrong")
    assert current_lockout(PASSWORD, "oscar-operator", "203.0.113.5") is None
    delays = []
    for _ in range(4):
        sign_in(client, "oscar-operator", "wrong")
        lockout = current_lockout(PASSWORD, "oscar-operator", "203.0.113.5")
        delays.append(lockout.seconds_left)
        assert b"Too many failed" in sign_in(client, "oscar-operator", TEST_PASSWORD).content
        age_failures(lockout.seconds_left + 1)  # the delay has passed: one more guess is allowed
    assert delays == [10, 20, 35, 35]  # doubling, up to SESAM_LOGIN_LOCKOUT_SECONDS
    assert sign_in(client, "oscar-operator", TEST_PASSWORD).status_code == 302


def test_attempts_refused_while_locked_do_not_lengthen_the_delay(client, operator_user, settings):
    from sesamweb.accounts.models import LoginFailure

    settings.SESAM_LOGIN_MAX_FAILURES = 2
    for _ in range(6):
        sign_in(client, "oscar-operator", "wrong")
    assert LoginFailure.objects.count() == 2


def test_a_successful_sign_in_clears_the_failures_from_that_address(client, operator_user, settings):
    settings.SESAM_LOGIN_MAX_FAILURES = 3
    sign_in(client, "oscar-operator", "wrong")
    sign_in(client, "oscar-operator", "wrong")
    assert sign_in(client, "oscar-operator", TEST_PASSWORD).status_code == 302
    client.post(reverse("logout"))
    sign_in(client, "oscar-operator", "wrong")
    sign_in(client, "oscar-operator", "wrong")
    assert sign_in(client, "oscar-operator", TEST_PASSWORD).status_code == 302


def test_a_success_elsewhere_does_not_reset_an_attacker_address(client, operator_user, settings):
    settings.SESAM_LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        sign_in(client, "oscar-operator", "wrong", address="192.0.2.66")
    assert sign_in(client, "oscar-operator", TEST_PASSWORD, address="198.51.100.1").status_code == 302
    client.post(reverse("logout"))
    assert b"Too many failed" in sign_in(client, "oscar-operator", TEST_PASSWORD, address="192.0.2.66").content


def test_a_forwarded_address_counts_only_behind_a_trusted_proxy(client, operator_user, settings):
    settings.SESAM_LOGIN_MAX_FAILURES = 3
    settings.SESAM_TRUSTED_PROXIES = ["10.0.0.1"]
    for _ in range(3):  # an attacker behind the proxy
        client.post(reverse("login"), {"username": "oscar-operator", "password": "wrong"},
                    REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.66")
    # The user behind the same proxy, from their own address, is not locked out.
    response = client.post(reverse("login"), {"username": "oscar-operator", "password": TEST_PASSWORD},
                           REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED, source="192.0.2.66").count() == 3


def test_sign_out_needs_a_post(admin_client):
    assert admin_client.get(reverse("logout")).status_code == 405
