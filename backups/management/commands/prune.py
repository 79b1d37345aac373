from django.core.management.base import BaseCommand, CommandError

from backups.cli import find_store, find_vm
from backups.maintenance import prune_store
from backups.repository import LastGoodBackupError, RepositoryError, RetentionPolicy
from sesamweb.audit.log import acting_as


class Command(BaseCommand):
    help = "Delete restore points outside a retention policy (chunks are freed by gc)."

    def add_arguments(self, parser):
        parser.add_argument("--store", required=True)
        parser.add_argument("--vm", help="only this VM (uuid or name)")
        parser.add_argument("--keep-last", type=int, default=0)
        parser.add_argument("--keep-daily", type=int, default=0)
        parser.add_argument("--keep-weekly", type=int, default=0)
        parser.add_argument("--keep-monthly", type=int, default=0)
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--confirm-last", action="store_true",
                            help="allow deleting the only good restore point of a VM")

    def handle(self, *args, **o):
        store = find_store(o["store"])
        policy = RetentionPolicy(keep_last=o["keep_last"], keep_daily=o["keep_daily"],
                                 keep_weekly=o["keep_weekly"], keep_monthly=o["keep_monthly"])
        if policy.is_empty:
            raise CommandError("give at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly")
        vm_uuid = find_vm(o["vm"]).uuid if o["vm"] else None
        try:
            with acting_as(None, source="cli:prune"):
                plan = prune_store(store, policy, vm_uuid=vm_uuid, confirm_last=o["confirm_last"], dry_run=o["dry_run"])
        except LastGoodBackupError as exc:
            raise CommandError(f"{exc}; add --confirm-last to delete it anyway") from exc
        except RepositoryError as exc:
            raise CommandError(str(exc)) from exc
        verb = "would delete" if o["dry_run"] else "deleted"
        for point_id in plan.remove:
            self.stdout.write(f"{verb} {point_id}")
        for point_id, reasons in sorted(plan.keep.items()):
            self.stdout.write(f"keep   {point_id} ({', '.join(reasons)})")
        self.stdout.write(self.style.SUCCESS(f"{len(plan.remove)} restore point(s) {verb}, {len(plan.keep)} kept."))
