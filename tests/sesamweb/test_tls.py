"""Over TLS (directly, or behind a trusted proxy that says so) cookies are Secure and HSTS is
sent; over plain HTTP neither, and a client cannot claim TLS with X-Forwarded-Proto itself."""
import pytest
from django.urls import reverse

from tests.fixtures.users import TEST_PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def proxy_settings(settings):
    settings.SESAM_TRUSTED_PROXIES = ["10.0.0.1"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    return settings


def sign_in(client, **extra):
    client.get(reverse("login"), **extra)  # sets the CSRF cookie
    return client.post(reverse("login"), {"username": "oscar-operator", "password": TEST_PASSWORD}, **extra)


def cookie_flags(response):
    return {name: bool(morsel["secure"]) for name, morsel in response.cookies.items()}


def test_over_tls_the_session_and_csrf_cookies_are_secure_and_hsts_is_sent(client, operator_user):
    page = client.get(reverse("login"), secure=True)
    assert cookie_flags(page) == {"csrftoken": True}
    assert page["Strict-Transport-Security"].startswith("max-age=")
    response = client.post(reverse("login"), {"username": "oscar-operator", "password": TEST_PASSWORD}, secure=True)
    assert response.status_code == 302
    assert cookie_flags(response)["sessionid"] is True


def test_over_plain_http_cookies_are_not_secure_and_no_hsts_is_sent(client, operator_user):
    response = sign_in(client)
    assert response.status_code == 302
    assert cookie_flags(response)["sessionid"] is False
    assert "Strict-Transport-Security" not in response


def test_behind_a_trusted_proxy_that_terminates_tls_cookies_are_secure(client, operator_user, proxy_settings):
    response = sign_in(client, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 302
    assert cookie_flags(response)["sessionid"] is True
    assert "Strict-Transport-Security" in response


def test_a_client_cannot_claim_tls_with_x_forwarded_proto(client, operator_user, proxy_settings):
    response = sign_in(client, REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 302
    assert cookie_flags(response)["sessionid"] is False
    assert "Strict-Transport-Security" not in response
