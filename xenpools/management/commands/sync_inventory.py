from django.core.management.base import BaseCommand, CommandError

from sesamweb.audit.log import acting_as
from xenpools.connection import PoolError
from xenpools.inventory import sync_pool
from xenpools.models import VM, Pool


class Command(BaseCommand):
    help = "Read the inventory of every pool (or one) and update the console's mirror."

    def add_arguments(self, parser):
        parser.add_argument("--pool", help="name of the pool to sync (default: all)")

    def handle(self, *args, pool=None, **options):
        pools = Pool.objects.all()
        if pool:
            pools = pools.filter(name=pool)
            if not pools:
                raise CommandError(f"no pool named {pool!r}")
        failures = 0
        with acting_as(None, source="cli"):
            for each in pools:
                try:
                    result = sync_pool(each)
                except PoolError as exc:
                    failures += 1
                    self.stderr.write(f"{each.name}: {exc}")
                    continue
                vms = VM.objects.filter(pool=each, removed_at__isnull=True, is_snapshot=False).count()
                self.stdout.write(f"{each.name}: synced ({vms} VMs, {sum(result.counts.values())} objects changed)")
        if failures:
            raise CommandError(f"{failures} pool(s) could not be synced")
