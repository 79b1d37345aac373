from django.core.management.base import BaseCommand

from sesamweb.audit.checkpoints import write_checkpoint


class Command(BaseCommand):
    help = "Write a signed checkpoint of the audit chain's head now (data directory, data stores, syslog)."

    def handle(self, *args, **options):
        checkpoint = write_checkpoint()
        self.stdout.write("The audit log is empty: no checkpoint." if checkpoint is None else f"Wrote the {checkpoint}.")
