from django.core.management.base import BaseCommand, CommandError

from backups.cli import human_bytes, write_stream_to_file
from backups.formats.xva import XvaError
from backups.repository import RepositoryError
from backups.restore.export import point_xva
from backups.restore.plan import RestorePlanError, find_point
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import acting_as, record_event


class Command(BaseCommand):
    help = ("Write a restore point as a standard XVA file (verified chunks), which any XenServer / "
            "XCP-ng imports with `xe vm-import filename=FILE`.")

    def add_arguments(self, parser):
        parser.add_argument("backup", metavar="ID", help='"<vm-uuid>/<timestamp>" or "store:id"')
        parser.add_argument("output", help="file to write (must not exist)")
        parser.add_argument("--store", help="data store name (when the id is on several stores)")
        parser.add_argument("--checksum", choices=["sha1", "xxhash"], default="sha1",
                            help="checksum members: sha1 (default) for every xapi and tool, xxhash for "
                                 "XenServer / XCP-ng 8 only (faster)")

    def handle(self, *args, backup, output, store, checksum, **options):
        try:
            point = find_point(backup, store)
            export = point_xva(point, checksum=checksum)
        except (RestorePlanError, XvaError, RepositoryError) as exc:
            raise CommandError(str(exc)) from None
        written = write_stream_to_file(self.stdout, output, export.blocks, export.length, export.filename)
        with acting_as(None, source="cli:export_xva"):
            record_event(AuditAction.RESTORE, target=point, message=(
                f"{point.vm_name} ({point.point_id}) exported as an XVA file to {output}"))
        self.stdout.write(self.style.SUCCESS(f"{output}: {human_bytes(written)}; import it with "
                                             f"xe vm-import filename={output}"))
