"""django-q2 entry points (thin): the every-minute sender and the daily digest."""
from .delivery import send_due
from .digest import send_daily_digest as _send_daily_digest


def send_due_deliveries():
    return send_due()


def send_daily_digest():
    event = _send_daily_digest()
    return event.pk if event else None
