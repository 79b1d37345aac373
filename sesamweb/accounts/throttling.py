"""Sign-in throttling: after SESAM_LOGIN_MAX_FAILURES failures within
SESAM_LOGIN_LOCKOUT_SECONDS, for one username or from one address, further attempts are
refused (without checking the password) until the oldest counted failure ages out.
Attempts refused while locked do not extend the lock."""
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import LoginFailure


@dataclass
class Lockout:
    seconds_left: int
    reason: str  # "username" or "address"

    @property
    def message(self):
        minutes = max(1, round(self.seconds_left / 60))
        return (
            "Too many failed sign-in attempts. Sign-in is locked for about "
            f"{minutes} minute{'s' if minutes != 1 else ''}; try again later or ask an administrator."
        )


def _window_start(now):
    return now - timedelta(seconds=settings.SESAM_LOGIN_LOCKOUT_SECONDS)


def current_lockout(username: str, source: str) -> Lockout | None:
    now = timezone.now()
    limit = settings.SESAM_LOGIN_MAX_FAILURES
    recent = LoginFailure.objects.filter(created__gt=_window_start(now))
    for reason, condition in (("username", Q(username=username.lower())), ("address", Q(source=source))):
        if reason == "username" and not username:
            continue
        if reason == "address" and not source:
            continue
        times = list(recent.filter(condition).order_by("-created").values_list("created", flat=True)[:limit])
        if len(times) >= limit:
            unlock = times[-1] + timedelta(seconds=settings.SESAM_LOGIN_LOCKOUT_SECONDS)
            return Lockout(max(1, int((unlock - now).total_seconds()) + 1), reason)
    return None


def record_failure(username: str, source: str) -> None:
    LoginFailure.objects.create(username=(username or "").lower()[:150], source=(source or "")[:100])
    LoginFailure.objects.filter(created__lt=_window_start(timezone.now()) - timedelta(days=1)).delete()
    _notify_on_lockout(username, source)


def _notify_on_lockout(username: str, source: str) -> None:
    """Tell the administrators once, when this failure is the one that locks sign-in."""
    limit = settings.SESAM_LOGIN_MAX_FAILURES
    recent = LoginFailure.objects.filter(created__gt=_window_start(timezone.now()))
    counts = [recent.filter(username=username.lower()).count() if username else 0,
              recent.filter(source=source).count() if source else 0]
    if limit in counts:
        from sesamweb.notify.hooks import login_failures

        login_failures(username, source, limit, settings.SESAM_LOGIN_LOCKOUT_SECONDS)


def clear_failures(username: str) -> None:
    LoginFailure.objects.filter(username=username.lower()).delete()
