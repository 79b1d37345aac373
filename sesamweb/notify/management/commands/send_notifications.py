"""Send due notification deliveries: once, or in a loop (like Healthchecks' sendalerts).
The django-q2 schedule does the same every minute; this command suits a host without
a cluster, and scripts."""
import time

from django.core.management.base import BaseCommand

from sesamweb.notify.delivery import send_due
from sesamweb.notify.digest import send_daily_digest


class Command(BaseCommand):
    help = "Send the notification deliveries that are due (once, or every --interval seconds)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="send what is due now, then exit")
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between rounds in a loop")
        parser.add_argument("--digest", action="store_true", help="queue the daily digest now, then send")

    def handle(self, *args, once=False, interval=5.0, digest=False, **options):
        if digest:
            event = send_daily_digest()
            self.stdout.write(f"digest event #{event.pk if event else '?'} recorded")
        while True:
            sent = send_due()
            if sent:
                self.stdout.write(f"attempted {sent} deliveries")
            if once:
                return
            time.sleep(interval)
