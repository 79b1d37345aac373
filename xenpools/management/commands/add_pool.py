from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from sesamweb.audit.log import acting_as
from xenpools.connection import PoolCertificateUnknown, PoolConnection, PoolError
from xenpools.models import VM, Pool
from xenpools.registration import register_pool


class Command(BaseCommand):
    help = "Register a pool: ADDRESS is a host, host:port or URL (http://h:p, https://h:p; default https:443)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("address")
        parser.add_argument("--user", default="root")
        parser.add_argument("--password-file", required=True, help="file whose first line is the password")
        parser.add_argument("--insecure", action="store_true",
                            help="allow an http:// address (password and backups cross the network unencrypted)")
        parser.add_argument("--trust-fingerprint", nargs="?", const="", default=None, metavar="SHA256",
                            help="https: trust the master's certificate (optionally only if it has this fingerprint)")

    def handle(self, *args, name, address, user, password_file, trust_fingerprint, insecure=False, **options):
        if address.strip().lower().startswith("http://") and not insecure:
            raise CommandError(f"{address} is plain HTTP: the pool password and every backup would cross the network "
                               "unencrypted; use https:// or pass --insecure")
        if Pool.objects.filter(name=name).exists():
            raise CommandError(f"a pool named {name!r} already exists")
        try:
            password = Path(password_file).read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise CommandError(f"cannot read the password from {password_file}: {exc}") from None
        try:
            probe = PoolConnection.probe(address, user, password, fingerprint=trust_fingerprint or None,
                                         accept_new_fingerprint=trust_fingerprint is not None)
        except PoolCertificateUnknown as exc:
            raise CommandError(f"{exc} Run again with --trust-fingerprint {exc.fingerprint} to trust it.") from None
        except (PoolError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if probe.redirected_from:
            self.stdout.write(f"{probe.redirected_from} is a pool member; using the pool master {probe.master_address}")
        with acting_as(None, source="cli"):
            pool = register_pool(name, address, user, password, probe)
        vms = VM.objects.filter(pool=pool, removed_at__isnull=True, is_snapshot=False).count()
        self.stdout.write(f"added pool {pool.name} ({probe.product_brand} {probe.product_version}, "
                          f"master {pool.master_address}, {len(probe.hosts)} hosts, {vms} VMs; health: {pool.get_health_display()})")
        if pool.last_error:
            self.stderr.write(f"first sync failed: {pool.last_error}")
