"""Throttling of failed sign-ins and unknown API tokens, so that it slows a guesser down without
handing anyone a way to lock other people out.

- Wrong passwords count per (user name, address): a guesser elsewhere never locks the user out,
  and a success clears only that pair.
- Unknown API tokens count per address, apart from passwords: they never slow down the sign-in
  page nor a valid token (a valid token is accepted before any throttling is looked at).
- After SESAM_LOGIN_MAX_FAILURES failures, each further attempt must wait SESAM_LOGIN_DELAY_SECONDS
  after the latest failure, doubling with each failure up to SESAM_LOGIN_LOCKOUT_SECONDS.
  Attempts refused while waiting are not counted, so they do not lengthen the wait.
- The address is the client's as sesamweb/client_address.py finds it (trusted proxies only).
"""
import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import LoginFailure

PASSWORD = LoginFailure.Kind.PASSWORD
TOKEN = LoginFailure.Kind.TOKEN
FAILURES_KEPT = timedelta(days=1)  # older failures are forgotten (and deleted)


@dataclass
class Lockout:
    seconds_left: int
    reason: str  # what is being slowed down, for the audit log

    @property
    def message(self):
        minutes = max(1, round(self.seconds_left / 60))
        return (
            "Too many failed sign-in attempts. Sign-in is locked for about "
            f"{minutes} minute{'s' if minutes != 1 else ''}; try again later or ask an administrator."
        )


def delay_after(failures: int) -> timedelta:
    """How long to wait after the latest of `failures` failures."""
    beyond = failures - settings.SESAM_LOGIN_MAX_FAILURES
    if beyond < 0:
        return timedelta(0)
    ceiling = settings.SESAM_LOGIN_LOCKOUT_SECONDS
    seconds = ceiling if beyond >= 32 else min(ceiling, settings.SESAM_LOGIN_DELAY_SECONDS * 2**beyond)
    return timedelta(seconds=seconds)


def _failures(kind, username, source):
    since = timezone.now() - FAILURES_KEPT
    return LoginFailure.objects.filter(kind=kind, username=(username or "").lower()[:150],
                                       source=(source or "")[:100], created__gt=since)


def current_lockout(kind, username: str, source: str) -> Lockout | None:
    failures = _failures(kind, username, source)
    count = failures.count()
    if count < settings.SESAM_LOGIN_MAX_FAILURES:
        return None
    latest = failures.order_by("-created").values_list("created", flat=True).first()
    seconds_left = (latest + delay_after(count) - timezone.now()).total_seconds()
    if seconds_left <= 0:
        return None
    reason = f"{username} from {source or 'an unknown address'}" if kind == PASSWORD else f"tokens from {source}"
    return Lockout(math.ceil(seconds_left), reason)


def record_failure(kind, username: str, source: str) -> None:
    LoginFailure.objects.create(kind=kind, username=(username or "").lower()[:150], source=(source or "")[:100])
    LoginFailure.objects.filter(created__lt=timezone.now() - FAILURES_KEPT).delete()
    if _failures(kind, username, source).count() == settings.SESAM_LOGIN_MAX_FAILURES:
        # Tell the administrators once, when this failure is the one that starts the delays.
        from sesamweb.notify.hooks import login_failures

        login_failures(username if kind == PASSWORD else "", source, settings.SESAM_LOGIN_MAX_FAILURES,
                       int(FAILURES_KEPT.total_seconds()))


def clear_failures(kind, username: str, source: str) -> None:
    _failures(kind, username, source).delete()
