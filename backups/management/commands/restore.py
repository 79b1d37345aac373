import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from backups.choices import RunStatus, Trigger
from backups.cli import ProgressBar, human_bytes
from backups.restore.plan import (
    Identity,
    RestorePlanError,
    StartMode,
    default_plan,
    find_point,
    queue_restore,
    request_restore,
    run_restore,
)
from sesamweb.audit.log import acting_as
from xenpools.models import Host, Network, Pool, StorageRepository


class Command(BaseCommand):
    help = ("Restore a VM from a restore point to a pool (here, with a progress bar, or --queue on the workers). "
            "Unset options take the wizard's defaults: original SRs and networks where the pool has them, new "
            "identity, halted, named '<name> (restored <date>)'.")

    def add_arguments(self, parser):
        parser.add_argument("--backup", required=True, metavar="ID",
                            help='restore point id "<vm-uuid>/<timestamp>" as list_backups prints it, or "store:id"')
        parser.add_argument("--pool", required=True, help="target pool name")
        parser.add_argument("--store", help="data store name (when the id is on several stores)")
        parser.add_argument("--sr", help="target SR name (or uuid) for every disk")
        parser.add_argument("--host", help="host name (or uuid) to start or resume the VM on")
        parser.add_argument("--network", action="append", default=[], metavar="DEVICE=NETWORK",
                            help='put interface DEVICE on NETWORK (name or uuid), or "DEVICE=none" to leave it out; '
                                 "repeatable (default: the network of the same name, then bridge)")
        identity = parser.add_mutually_exclusive_group()
        identity.add_argument("--keep-identity", dest="identity", action="store_const", const=Identity.KEEP,
                              help="keep the original VM UUID and MAC addresses")
        identity.add_argument("--new-identity", dest="identity", action="store_const", const=Identity.NEW,
                              help="new UUID and MACs (default)")
        parser.add_argument("--replace-original", action="store_true",
                            help="with --keep-identity: replace the (halted) original VM")
        parser.add_argument("--start", choices=[value for value, _ in StartMode.CHOICES], default=StartMode.HALTED)
        parser.add_argument("--name", help="name of the restored VM")
        parser.add_argument("--disconnect-vifs", action="store_true", help="network interfaces pass no traffic")
        parser.add_argument("--queue", action="store_true", help="queue on the worker cluster and return")

    def handle(self, *args, **options):
        try:
            point = find_point(options["backup"], options.get("store"))
        except RestorePlanError as exc:
            raise CommandError(str(exc)) from None
        pool = self._find(Pool.objects.all(), options["pool"], "pool", by_uuid=False)
        plan = default_plan(point, pool)
        if options.get("sr"):
            sr = self._find(StorageRepository.objects.filter(pool=pool), options["sr"], f"SR in pool {pool}")
            plan.sr_by_disk = {key: sr for key in plan.sr_by_disk} or {"vbd0": sr}
        if options.get("host"):
            plan.target_host = self._find(Host.objects.filter(pool=pool), options["host"], f"host in pool {pool}")
        for mapping in options["network"]:
            device, _, name = mapping.partition("=")
            if not device or not name:
                raise CommandError(f"--network takes DEVICE=NETWORK, not {mapping!r}")
            plan.network_by_vif[device] = None if name.lower() == "none" else self._find(
                Network.objects.filter(pool=pool), name, f"network in pool {pool}")
        plan.identity = options.get("identity") or Identity.NEW
        plan.replace_original = options["replace_original"]
        plan.start_mode = options["start"]
        plan.disconnect_vifs = options["disconnect_vifs"]
        if options.get("name"):
            plan.name = options["name"]
        try:
            with acting_as(None, source="cli:restore"):
                run = request_restore(plan, None, trigger=Trigger.CLI, queue=False)
        except RestorePlanError as exc:
            listing = "\n".join(f"  - {p.step}: {p.message}" for p in exc.problems)
            raise CommandError(f"the restore cannot start:\n{listing}") from None
        if options["queue"]:
            queue_restore(run)
            self.stdout.write(f"Restore #{run.pk} queued.")
            return
        worker = threading.Thread(target=self._run, args=(run.pk,), daemon=True)
        worker.start()
        bar = ProgressBar(self.stdout, label=point.vm_name)
        while worker.is_alive():
            worker.join(0.5)
            run.refresh_from_db()
            bar.update(run.progress, f"{run.get_phase_display()} {human_bytes(run.bytes_done)}/{human_bytes(run.bytes_total)}")
        bar.done()
        run.refresh_from_db()
        for warning in run.warnings:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))
        if run.status not in (RunStatus.SUCCESS, RunStatus.WARNING):
            raise CommandError(f"restore of {point.vm_name} {run.get_status_display().lower()}: {run.error}")
        seconds = run.duration_seconds or 0
        rate = run.bytes_total / seconds / 1e6 if seconds else 0
        self.stdout.write(self.style.SUCCESS(
            f"{point.vm_name} restored to pool {pool} as {plan.name!r} (VM {run.restored_vm_uuid}, {run.path}) in "
            f"{seconds:.1f} s ({rate:.0f} MB/s over {human_bytes(run.bytes_total)} of disks), {plan.start_mode}"))

    @staticmethod
    def _find(queryset, text, what, by_uuid=True):
        found = list(queryset.filter(name=text)) or (list(queryset.filter(uuid=text)) if by_uuid else [])
        if not found:
            names = ", ".join(queryset.values_list("name", flat=True)) or "none"
            raise CommandError(f"no {what} named {text!r}; there are: {names}")
        if len(found) > 1:
            raise CommandError(f"several {what}s are named {text!r}: give the uuid")
        return found[0]

    @staticmethod
    def _run(run_id):
        try:
            with acting_as(None, source="cli:restore"):
                run_restore(run_id)
        finally:
            close_old_connections()
