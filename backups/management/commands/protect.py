from django.core.management.base import BaseCommand, CommandError

from backups.jobs.editing import set_protected
from backups.restore.plan import RestorePlanError, find_point
from sesamweb.audit.log import acting_as


class Command(BaseCommand):
    help = "Protect a restore point by hand: never pruned, never deleted, until unprotected (audited)."
    protect = True

    def add_arguments(self, parser):
        parser.add_argument("point", help='restore point: "<vm-uuid>/<timestamp>" or "store:<id>" as list_backups '
                                          "prints it, or its database id")
        parser.add_argument("--store", help="data store name, when the point id is on several")
        if self.protect:
            parser.add_argument("--note", default="", help="why it is kept (shown beside it)")

    def handle(self, *args, point, store=None, note="", **options):
        try:
            found = find_point(point, store)
        except RestorePlanError as exc:
            raise CommandError("; ".join(p.message for p in exc.problems)) from None
        if len(note) > 200:
            raise CommandError("--note takes at most 200 characters")
        verb = "protected" if self.protect else "unprotected"
        if found.protected == self.protect and (not self.protect or found.protected_note == note):
            self.stdout.write(f"{found.store.name}:{found.point_id} is {verb} already.")
            return
        with acting_as(None, source=f"cli:{verb[:-2]}"):
            set_protected(found, self.protect, note=note)
        self.stdout.write(self.style.SUCCESS(f"{found.store.name}:{found.point_id} ({found.vm_name}, "
                                             f"{found.taken_at:%Y-%m-%d %H:%M} UTC) {verb}."))
