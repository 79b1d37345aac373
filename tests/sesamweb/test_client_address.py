"""The client address (audit source, sign-in throttling) is REMOTE_ADDR, unless the request came
through a proxy listed in SESAM_TRUSTED_PROXIES: then it is the nearest untrusted X-Forwarded-For hop."""
import pytest
from django.test import RequestFactory

from sesamweb.client_address import client_address


def request(remote, forwarded=None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=remote, **extra)


def test_forwarded_for_is_ignored_without_trusted_proxies(settings):
    settings.SESAM_TRUSTED_PROXIES = []
    assert client_address(request("203.0.113.5", "10.9.9.9")) == "203.0.113.5"


def test_forwarded_for_is_ignored_from_an_untrusted_peer(settings):
    settings.SESAM_TRUSTED_PROXIES = ["10.0.0.1"]
    assert client_address(request("203.0.113.5", "10.9.9.9")) == "203.0.113.5"


@pytest.mark.parametrize("forwarded, expected", [
    ("198.51.100.7", "198.51.100.7"),
    ("1.2.3.4, 198.51.100.7", "198.51.100.7"),  # the client may prepend anything; the proxy appends
    ("198.51.100.7, 10.0.0.2", "198.51.100.7"),  # a chain of trusted proxies (10.0.0.0/24)
    ("2001:db8::7", "2001:db8::7"),
    ("", "10.0.0.1"),
    ("not-an-address", "10.0.0.1"),
    ("10.0.0.3", "10.0.0.3"),  # only trusted hops: the farthest one
])
def test_forwarded_for_from_a_trusted_proxy_gives_the_client(settings, forwarded, expected):
    settings.SESAM_TRUSTED_PROXIES = ["10.0.0.0/24"]
    assert client_address(request("10.0.0.1", forwarded)) == expected


def test_a_trusted_proxy_without_forwarded_for_is_the_client(settings):
    settings.SESAM_TRUSTED_PROXIES = ["10.0.0.1"]
    assert client_address(request("10.0.0.1")) == "10.0.0.1"
