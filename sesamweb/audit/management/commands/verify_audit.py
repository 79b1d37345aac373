from django.core.management.base import BaseCommand, CommandError

from sesamweb.audit.chain import verify_chain


class Command(BaseCommand):
    help = ("Check the audit log's keyed chain and compare its head with the latest signed checkpoint; "
            "list every row that was edited, deleted, reordered or re-hashed, and rows truncated from the end. "
            "Exits non-zero when anything is broken.")

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", action="append", default=[], metavar="FILE",
                            help="also compare with this checkpoint copy (e.g. a data store's audit-checkpoint.json)")

    def handle(self, *args, checkpoint, **options):
        report = verify_chain(checkpoint_paths=checkpoint)
        if not report.ok:
            raise CommandError(str(report))
        self.stdout.write(self.style.SUCCESS(str(report)))
