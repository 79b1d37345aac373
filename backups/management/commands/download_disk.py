from django.core.management.base import BaseCommand, CommandError

from backups.cli import human_bytes, write_stream_to_file
from backups.repository import RepositoryError
from backups.restore.download import FORMATS, DownloadError, disk_download
from backups.restore.plan import RestorePlanError, find_point
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import acting_as, record_event


class Command(BaseCommand):
    help = "Write one disk of a restore point to a file, raw or as a sparse VHD (verified chunks)."

    def add_arguments(self, parser):
        parser.add_argument("--backup", required=True, metavar="ID", help='"<vm-uuid>/<timestamp>" or "store:id"')
        parser.add_argument("--store", help="data store name (when the id is on several stores)")
        parser.add_argument("--disk", default="vbd0", help='disk key, e.g. "vbd0" (default), "vbd1", "suspend"')
        parser.add_argument("--format", choices=FORMATS, default="raw")
        parser.add_argument("--output", required=True, help="file to write (must not exist)")

    def handle(self, *args, **options):
        try:
            point = find_point(options["backup"], options.get("store"))
            download = disk_download(point, options["disk"], options["format"])
        except (RestorePlanError, DownloadError, RepositoryError) as exc:
            raise CommandError(str(exc)) from None
        written = write_stream_to_file(self.stdout, options["output"], download.blocks, download.length,
                                       download.filename)
        with acting_as(None, source="cli:download_disk"):
            record_event(AuditAction.RESTORE, target=point, message=(
                f"disk {options['disk']} of {point.vm_name} ({point.point_id}) written to {options['output']} "
                f"as {options['format']}"))
        self.stdout.write(self.style.SUCCESS(f"{options['output']}: {human_bytes(written)}"))
