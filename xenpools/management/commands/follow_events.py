import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from xenpools.follower import follow_pools
from xenpools.models import Pool


class Command(BaseCommand):
    help = "Follow XenAPI events of every pool (or one) and keep the inventory current (runs until stopped)."

    def add_arguments(self, parser):
        parser.add_argument("--pool", help="name of the pool to follow (default: all)")
        parser.add_argument("--event-timeout", type=float, default=30.0, help="seconds each event.from call waits")

    def handle(self, *args, pool=None, event_timeout=30.0, **options):
        pools = Pool.objects.all()
        if pool:
            pools = pools.filter(name=pool)
        pools = list(pools)
        if not pools:
            raise CommandError(f"no pool named {pool!r}" if pool else "no pools registered yet")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"following {', '.join(p.name for p in pools)} (Ctrl-C to stop)")
        self.stdout.flush()
        follow_pools(pools, stop, event_timeout=event_timeout)
