from django.core.management.base import BaseCommand, CommandError

from backups.cli import find_store, human_bytes
from backups.maintenance import collect_garbage
from backups.repository import RepositoryError
from sesamweb.audit.log import acting_as


class Command(BaseCommand):
    help = "Delete chunks no restore point uses (safe while backups run)."

    def add_arguments(self, parser):
        parser.add_argument("--store", required=True)
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--grace-period", type=int, help="seconds an unreferenced chunk is kept (default 3600)")

    def handle(self, *args, store, dry_run, grace_period, **options):
        store = find_store(store)
        try:
            with acting_as(None, source="cli:gc"):
                report = collect_garbage(store, dry_run=dry_run, grace_period=grace_period)
        except RepositoryError as exc:
            raise CommandError(str(exc)) from exc
        for warning in report.warnings:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(self.style.SUCCESS(
            f"{verb} {report.deleted_chunks} chunk(s) ({human_bytes(report.deleted_bytes)}) and "
            f"{report.deleted_temporaries} temporary file(s); {report.referenced_chunks} chunk(s) in use, "
            f"{report.kept_recent} recent unreferenced chunk(s) kept for running backups"))
