"""API authentication: `Authorization: Token <key>` with our hashed, named tokens.

Unknown tokens are throttled per address, apart from passwords (throttling.py); a valid token
is accepted before any throttling is looked at, so guessers cannot lock it out."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import authentication, exceptions

from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.log import record_event, request_source

from .models import ApiToken
from .throttling import TOKEN, current_lockout, record_failure


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: expected 'Token <key>'.")
        try:
            key = parts[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header: the key must be plain text.")
        token = ApiToken.objects.for_key(key)
        if token is None or not token.user.is_active:
            source = request_source(request)
            lockout = current_lockout(TOKEN, "", source)
            if lockout:
                raise exceptions.Throttled(wait=lockout.seconds_left,
                                           detail="Too many unknown tokens from this address.")
            record_failure(TOKEN, "", source)
            record_event(AuditAction.LOGIN_FAILED, actor="", source=source, outcome=AuditOutcome.FAILURE,
                         target_type="api", message="API request with an unknown or revoked token")
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        token.mark_used()
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Describes the token scheme in the OpenAPI schema (found by drf-spectacular on import)."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix=ApiTokenAuthentication.keyword)
