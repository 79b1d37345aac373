from django.core.management.base import BaseCommand, CommandError

from backups.cli import ProgressBar, find_store, find_vm
from backups.maintenance import refresh_catalog, verify_points
from backups.models import DataStore, RestorePoint
from backups.repository import RepositoryError
from sesamweb.audit.log import acting_as


class Command(BaseCommand):
    help = "Re-read every chunk of restore points, check tags and ids, and mark damaged ones."

    def add_arguments(self, parser):
        parser.add_argument("--store", help="data store name (default: all)")
        parser.add_argument("--vm", help="only this VM's restore points (uuid or name)")
        parser.add_argument("--backup", help="only this restore point id")

    def handle(self, *args, store=None, vm=None, backup=None, **options):
        stores = [find_store(store)] if store else list(DataStore.objects.all())
        damaged_total = 0
        for each in stores:
            try:
                refresh_catalog(each)
                points = RestorePoint.objects.filter(store=each)
                if vm:
                    points = points.filter(vm_uuid=find_vm(vm).uuid)
                if backup:
                    points = points.filter(point_id=backup)
                if (vm or backup) and not points:
                    continue
                bar = ProgressBar(self.stdout, label=f"verify {each}")
                with acting_as(None, source="cli:verify"):
                    report = verify_points(each, list(points) if (vm or backup) else None,
                                           on_progress=lambda done, total: bar.update(done / total if total else 1))
                bar.done()
            except RepositoryError as exc:
                raise CommandError(f"data store {each}: {exc}") from exc
            for result in report.backups:
                if result.ok:
                    self.stdout.write(f"ok       {each}:{result.id}")
                else:
                    damaged_total += 1
                    reason = result.error or f"{len(result.damaged_chunks)} damaged chunk(s): " + ", ".join(
                        f"{cid[:16]}… {why}" for cid, why in list(result.damaged_chunks.items())[:5])
                    self.stdout.write(self.style.ERROR(f"DAMAGED  {each}:{result.id}: {reason}"))
        if damaged_total:
            raise CommandError(f"{damaged_total} restore point(s) are damaged")
        self.stdout.write(self.style.SUCCESS("All verified restore points are intact."))
