import os

from django.core.management.base import BaseCommand, CommandError

from backups.cli import find_store
from backups.repository import KeyAlreadyExportedError, RepositoryError
from backups.stores import export_key_file
from sesamweb.audit.log import acting_as


class Command(BaseCommand):
    help = "Write a data store's key file (once; --force to export it again deliberately)."

    def add_arguments(self, parser):
        parser.add_argument("store")
        parser.add_argument("--out", required=True, help="file to write (must not exist)")
        parser.add_argument("--force", action="store_true")

    def handle(self, *args, store, out, force, **options):
        store = find_store(store)
        if not store.encrypted:
            raise CommandError(f"data store {store} is not encrypted: it has no key")
        try:   # the file first: a key may be exported only once, so it must not be lost
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise CommandError(f"cannot create {out}: {exc}") from exc
        with os.fdopen(fd, "wb") as handle:
            try:
                with acting_as(None, source="cli:export_key"):
                    handle.write(export_key_file(store, force=force))
            except (KeyAlreadyExportedError, RepositoryError) as exc:
                os.unlink(out)
                if isinstance(exc, KeyAlreadyExportedError):
                    raise CommandError(f"the key file of {store} was exported already ({exc}); "
                                       "use --force to export it again") from exc
                raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Key file of {store} written to {out} (mode 0600). Keep it safe."))
