"""Sign-in, failed sign-in and sign-out are audited from Django's auth signals, so every
way in (the console, the admin site, the API's session login) is covered."""
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.log import record_event, request_source


def _source(request):
    return request_source(request) if request is not None else None


@receiver(user_logged_in, dispatch_uid="audit_login")
def audit_login(sender, request, user, **kwargs):
    record_event(AuditAction.LOGIN, actor=user, source=_source(request), target=user, message="Signed in")


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username", ""))[:150]
    record_event(AuditAction.LOGIN_FAILED, actor=username, source=_source(request),
                 outcome=AuditOutcome.FAILURE, message=f"Failed sign-in as {username!r}")


@receiver(user_logged_out, dispatch_uid="audit_logout")
def audit_logout(sender, request, user, **kwargs):
    if user is not None:
        record_event(AuditAction.LOGOUT, actor=user, source=_source(request), target=user, message="Signed out")
