"""Whenever the console is served over TLS (by daphne itself, or behind a trusted proxy that
terminates TLS and says so with X-Forwarded-Proto), every cookie it sets is Secure; Django's
SecurityMiddleware adds HSTS on the same condition (SECURE_HSTS_SECONDS).

X-Forwarded-Proto is dropped unless the peer is one of SESAM_TRUSTED_PROXIES, so a client
cannot claim TLS itself (settings.py names the header only when such a proxy is configured)."""
from .client_address import is_from_trusted_proxy


class TlsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "HTTP_X_FORWARDED_PROTO" in request.META and not is_from_trusted_proxy(request):
            del request.META["HTTP_X_FORWARDED_PROTO"]
        response = self.get_response(request)
        if request.is_secure():
            for morsel in response.cookies.values():
                morsel["secure"] = True
        return response
