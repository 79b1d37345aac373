import json

from django.core.management.base import BaseCommand, CommandError

from backups.cli import find_store, find_vm, human_bytes
from backups.maintenance import refresh_catalog
from backups.models import DataStore, RestorePoint
from backups.repository import RepositoryError


class Command(BaseCommand):
    help = "List restore points (read from the data stores' manifests)."

    def add_arguments(self, parser):
        parser.add_argument("--vm", help="VM uuid or name")
        parser.add_argument("--store", help="data store name")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, vm=None, store=None, as_json=False, **options):
        stores = [find_store(store)] if store else list(DataStore.objects.all())
        problems = []
        for each in stores:
            try:
                refresh_catalog(each)
            except RepositoryError as exc:
                problems.append(f"data store {each}: {exc}")
        points = RestorePoint.objects.filter(store__in=stores).select_related("store").order_by("vm_name", "taken_at")
        if vm:
            try:
                points = points.filter(vm_uuid=find_vm(vm).uuid)
            except CommandError:      # a VM gone from the inventory may still have backups
                points = points.filter(vm_uuid=vm) | points.filter(vm_name=vm)
        for problem in problems:
            self.stderr.write(self.style.WARNING(problem))
        if as_json:
            self.stdout.write(json.dumps([_as_dict(p) for p in points], indent=2))
            return
        if not points:
            self.stdout.write("No restore points.")
            return
        self.stdout.write("\n".join(table(points)))


HEADINGS = ("ID", "VM", "TAKEN (UTC)", "METHOD", "KIND", "SIZE", "STORED", "STATE")
RIGHT = {"SIZE", "STORED"}


def table(points):
    """The restore points as lines whose columns line up, whatever the lengths of the ids and
    names (each column as wide as its widest cell)."""
    rows = [tuple(cell or "-" for cell in (
        f"{p.store.name}:{p.point_id}", p.vm_name, f"{p.taken_at:%Y-%m-%d %H:%M:%S}", p.method, p.kind,
        human_bytes(p.virtual_size), human_bytes(p.bytes_stored),
        p.get_verify_state_display() + (", protected" if p.protected else ""))) for p in points]
    widths = [max(len(cell) for cell in column) for column in zip(HEADINGS, *rows)]
    lines = []
    for row in (HEADINGS, *rows):
        cells = [cell.rjust(width) if heading in RIGHT else cell.ljust(width)
                 for heading, cell, width in zip(HEADINGS, row, widths)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _as_dict(point):
    return {
        "id": point.point_id, "store": point.store.name, "vm_uuid": point.vm_uuid, "vm_name": point.vm_name,
        "time": point.taken_at.isoformat(), "method": point.method, "kind": point.kind,
        "virtual_size": point.virtual_size, "bytes_new": point.bytes_new, "bytes_stored": point.bytes_stored,
        "has_memory": point.has_memory, "verify_state": point.verify_state, "parent": point.parent_point_id or None,
        "protected": point.protected, "protected_note": point.protected_note,
    }

