"""Events the console's base raises itself: configuration changes (from the audit log)
and repeated sign-in failures (from sesamweb.accounts)."""
from sesamweb.audit.choices import AuditAction, AuditOutcome

from .choices import EventName, Severity
from .events import emit

CONFIG_ACTIONS = {AuditAction.CREATE, AuditAction.UPDATE, AuditAction.DELETE, AuditAction.TRUST_CERTIFICATE}


def config_changed_from_audit(audit_event) -> None:
    """Audit listener: a configuration action that succeeded becomes config.changed."""
    if audit_event.action not in CONFIG_ACTIONS or audit_event.outcome != AuditOutcome.SUCCESS:
        return
    who = audit_event.actor_username or "the system"
    what = audit_event.target_repr or audit_event.target_type or "an object"
    action = AuditAction(audit_event.action).label.lower()
    emit(EventName.CONFIG_CHANGED, Severity.INFO, title=f"Configuration changed: {action} of {what} by {who}",
         objects={"target": {"name": what, "type": audit_event.target_type, "id": audit_event.target_id,
                             "url": f"/audit/{audit_event.pk}/"},
                  "user": {"name": who}},
         details={"summary": audit_event.message, "action": audit_event.action, "source": audit_event.source,
                  "audit_sequence": audit_event.sequence})


def login_failures(username: str, source: str, failures: int, window_seconds: int) -> None:
    emit(EventName.LOGIN_FAILURES, Severity.WARNING,
         title=f"{failures} failed sign-ins in {window_seconds // 60} min for {username or 'an API token'}"
               f" from {source or 'an unknown address'}; sign-in is locked",
         objects={"user": {"name": username or "(API token)"}},
         details={"username": username, "source": source, "failures": failures})
