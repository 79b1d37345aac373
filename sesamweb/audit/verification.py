"""The chain check asked for from the audit page. A log of up to SESAM_AUDIT_VERIFY_INLINE_MAX
events is checked in the request and the report shown at once; a longer one (a million events
take about a minute) is checked by a worker, which records the outcome in the log itself
("Audit chain verified", success or failure, with the breaks), where the page shows it."""
from django.conf import settings

from .chain import verify_chain
from .choices import AuditAction, AuditOutcome
from .log import acting_as, record_event
from .models import AuditEvent

_LISTED_BREAKS = 200


def log_length() -> int:
    """The head's sequence: the number of events when none is missing (one index lookup)."""
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0


def checks_inline() -> bool:
    return log_length() <= settings.SESAM_AUDIT_VERIFY_INLINE_MAX


def verify_and_record(user=None):
    """Check the whole chain and append the outcome to the log; returns the report."""
    report = verify_chain()
    with acting_as(user, "worker"):
        record_event(AuditAction.AUDIT_VERIFY, target_type="audit.auditevent",
                     outcome=AuditOutcome.SUCCESS if report.ok else AuditOutcome.FAILURE, message=report.summary,
                     after={"checked": report.checked, "breaks": [str(b) for b in report.breaks[:_LISTED_BREAKS]]})
    return report


def verify_chain_task(user_id=None) -> str:
    """django-q2 entry point: the check the page queued."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    return verify_and_record(user).summary


def queue_verification(user) -> str:
    from django_q.tasks import async_task

    return async_task("sesamweb.audit.verification.verify_chain_task", user.pk if user else None,
                      task_name="audit: verify the chain")


def latest_verification():
    """The newest recorded chain check (one lookup on the (action, sequence) index)."""
    return AuditEvent.objects.filter(action=AuditAction.AUDIT_VERIFY).order_by("-sequence").first()
