"""django-q2 entry points (thin): the every-minute sender and the daily digest."""
from .delivery import send_due
from .digest import send_daily_digest as _send_daily_digest
from .events import prune_old_events


def send_due_deliveries():
    return send_due()


def send_daily_digest():
    prune_old_events()
    event = _send_daily_digest()
    return event.pk if event else None
