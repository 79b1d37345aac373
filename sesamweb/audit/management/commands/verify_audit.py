from django.core.management.base import BaseCommand, CommandError

from sesamweb.audit.chain import verify_chain


class Command(BaseCommand):
    help = "Check the audit log's hash chain; exit non-zero naming the first row that was changed, removed or moved."

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.ok:
            raise CommandError(str(report))
        self.stdout.write(self.style.SUCCESS(str(report)))
