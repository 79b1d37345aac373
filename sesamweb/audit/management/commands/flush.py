"""`manage.py flush` (also run by the test runner between transactional tests): Django's own,
allowed past the audit log's DELETE / TRUNCATE triggers for its duration (triggers.py)."""
from django.core.management.commands import flush

from sesamweb.audit.triggers import allow_flush


class Command(flush.Command):
    def handle(self, **options):
        with allow_flush(options["database"]):
            return super().handle(**options)
