"""`manage.py flush` (also run by the test runner between transactional tests): Django's own,
allowed past the audit log's DELETE / TRUNCATE triggers for its duration (triggers.py). The
data directory's checkpoint describes the log just emptied on purpose: it is kept, renamed,
so that verification does not report the new log as truncated forever."""
from django.core.management.commands import flush
from django.utils import timezone

from sesamweb.audit.checkpoints import data_directory_path
from sesamweb.audit.models import AuditEvent
from sesamweb.audit.triggers import allow_flush


class Command(flush.Command):
    def handle(self, **options):
        with allow_flush(options["database"]):
            result = super().handle(**options)
        checkpoint = data_directory_path()
        emptied = not AuditEvent.objects.using(options["database"]).exists()  # (not when cancelled)
        if emptied and checkpoint.exists():
            checkpoint.rename(checkpoint.with_name(f"audit-checkpoint.flushed-{timezone.now():%Y%m%dT%H%M%S%f}.json"))
        return result
