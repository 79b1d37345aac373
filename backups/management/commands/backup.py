import threading
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from backups.choices import BackupMethod, QuiesceFallback, RunStatus, Trigger
from backups.cli import ProgressBar, find_store, find_vm, human_bytes
from backups.models import VmBackup
from backups.services import BackupRequestError, queue_run, request_backup, run_in_this_process
from sesamweb.audit.log import acting_as


class Command(BaseCommand):
    help = "Back up a VM to a data store (here, with a progress bar, or --queue on the workers)."

    def add_arguments(self, parser):
        parser.add_argument("--vm", required=True, help="VM uuid or name")
        parser.add_argument("--store", required=True, help="data store name")
        parser.add_argument("--method", choices=BackupMethod.values, default=BackupMethod.NORMAL,
                            help="default: normal (a snapshot while the VM runs), as in the web form")
        parser.add_argument("--incremental", action="store_true", help="read only changed blocks when possible")
        parser.add_argument("--quiesce-fallback", choices=QuiesceFallback.values, default=QuiesceFallback.FAIL)
        parser.add_argument("--export-while-off", action="store_true",
                            help="offline method: export the halted VM instead of snapshotting and restarting it at once")
        parser.add_argument("--allow-hard-shutdown", action="store_true")
        parser.add_argument("--shutdown-timeout", type=int, default=600)
        parser.add_argument("--transfer-compression", choices=["none", "zstd", "gzip"], default="none")
        parser.add_argument("--queue", action="store_true", help="queue on the worker cluster and return")

    def handle(self, *args, **options):
        vm = find_vm(options["vm"])
        store = find_store(options["store"])
        try:
            with acting_as(None, source="cli:backup"):
                run = request_backup(
                    vm=vm, store=store, method=options["method"], incremental=options["incremental"],
                    trigger=Trigger.CLI, quiesce_fallback=options["quiesce_fallback"],
                    restart_after_snapshot=not options["export_while_off"],
                    allow_hard_shutdown=options["allow_hard_shutdown"],
                    shutdown_timeout=options["shutdown_timeout"],
                    transfer_compression=options["transfer_compression"],
                )
        except BackupRequestError as exc:
            raise CommandError(str(exc)) from exc
        if options["queue"]:
            queue_run(run)
            self.stdout.write(f"Backup run #{run.pk} queued.")
            return
        vm_backup = run.vm_backups.get()
        worker = threading.Thread(target=self._run, args=(run,), daemon=True)
        worker.start()
        bar = ProgressBar(self.stdout, label=f"{vm.name}")
        while worker.is_alive():
            worker.join(0.5)
            vm_backup.refresh_from_db()
            bar.update(vm_backup.progress, f"{vm_backup.get_phase_display()} {human_bytes(vm_backup.bytes_processed)}"
                                           f"/{human_bytes(vm_backup.total_bytes)}")
        bar.done()
        vm_backup.refresh_from_db()
        for warning in vm_backup.warnings:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))
        if vm_backup.status not in (RunStatus.SUCCESS, RunStatus.WARNING):
            raise CommandError(f"backup of {vm.name} {vm_backup.get_status_display().lower()}: {vm_backup.error}")
        seconds = vm_backup.duration_seconds or 0
        rate = vm_backup.bytes_processed / seconds / 1e6 if seconds else 0
        point = vm_backup.restore_point
        self.stdout.write(self.style.SUCCESS(
            f"{vm_backup.get_kind_display()} backup of {vm.name} done in {seconds:.1f} s ({rate:.0f} MB/s): "
            f"restore point {point.point_id}, read {human_bytes(vm_backup.bytes_read)}, new "
            f"{human_bytes(vm_backup.bytes_new)}, stored {human_bytes(vm_backup.bytes_stored)}"
            + (f", downtime {vm_backup.downtime_seconds:.1f} s" if vm_backup.downtime_seconds is not None else "")
        ))

    @staticmethod
    def _run(run):
        try:
            with acting_as(None, source="cli:backup"):
                run_in_this_process(run)
        finally:
            close_old_connections()
