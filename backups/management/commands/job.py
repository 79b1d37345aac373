"""manage.py job list | show | create | run: backup jobs from the command line.

`job run` starts a run here (trigger "command line") and backs its VMs up in this process,
at most the job's max_parallel_vms at a time, with a progress bar; it exits with 3 when a
VM was not backed up (failed, cancelled or skipped), so that scripts can tell."""
import re
import threading
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, transaction

from backups.choices import BackupMethod, QuiesceFallback, RunStatus, Trigger
from backups.cli import ProgressBar, find_store, find_vm, human_bytes
from backups.engine.backup import finish_run_if_done, run_vm_backup
from backups.jobs import schedules
from backups.jobs.api_serializers import BackupJobSerializer, JobScheduleSerializer
from backups.jobs.choices import ScheduleKind, SelectionMode
from backups.jobs.editing import job_saved, schedule_saved
from backups.jobs.runs import JobRunError, claim_next, finish_job_run, predict_kind, skip_if_window_closed, start_job_run
from backups.jobs.selection import select_vms
from backups.jobs.tasks import queue_job_run
from backups.models import BackupJob
from backups.services import cancel_run
from sesamweb.audit.log import acting_as
from xenpools.models import Pool

VM_NOT_BACKED_UP = 3          # exit code: the run finished, but not every VM has a new restore point
DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
GOOD = (RunStatus.SUCCESS, RunStatus.WARNING)


def find_job(text):
    job = BackupJob.objects.select_related("store").filter(name=text).first()
    if job is None and text.isdigit():
        job = BackupJob.objects.select_related("store").filter(pk=int(text)).first()
    if job is None:
        names = ", ".join(BackupJob.objects.values_list("name", flat=True)) or "none yet (manage.py job create)"
        raise CommandError(f"no backup job named {text!r}; jobs: {names}")
    return job


def parse_time(text, option):
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise CommandError(f"{option} takes a time as HH:MM, not {text!r}")
    return int(match[1]), int(match[2])


def parse_days(text):
    """'sat,sun', 'mon-fri' or '0,6' (0 = Monday) as weekday numbers."""
    days = set()
    for part in text.lower().split(","):
        ends = [p.strip()[:3] for p in part.split("-")]
        try:
            numbers = [DAY_NAMES.index(e) if e in DAY_NAMES else int(e) for e in ends]
        except ValueError:
            raise CommandError(f"unknown weekday in {text!r}; use mon,tue,... or mon-fri") from None
        if len(numbers) == 2:
            days.update(range(numbers[0], numbers[1] + 1))
        else:
            days.update(numbers)
    if not days or not all(0 <= d <= 6 for d in days):
        raise CommandError(f"weekdays {text!r}: use mon..sun or 0..6 (0 = Monday)")
    return sorted(days)


def schedule_cron(options):
    """The cron expression of --daily / --weekly / --every-hours / --cron, or None."""
    try:
        if options["daily"]:
            return schedules.daily_at(*parse_time(options["daily"], "--daily"))
        if options["weekly"]:
            days, _, at = options["weekly"].partition("@")
            if not at:
                raise CommandError("--weekly takes DAYS@HH:MM, e.g. sat,sun@03:00")
            return schedules.weekly_on(parse_days(days), *parse_time(at, "--weekly"))
        if options["every_hours"]:
            return schedules.every_hours(options["every_hours"])
    except schedules.ScheduleError as exc:
        raise CommandError(str(exc)) from None
    return options["cron"]


def problems(errors):
    """DRF validation errors as one line per field."""
    return "; ".join(f"{field}: {' '.join(str(m) for m in messages)}" if isinstance(messages, list)
                     else f"{field}: {messages}" for field, messages in errors.items())


class Command(BaseCommand):
    help = "Backup jobs: list, show (settings, schedules, last runs, prediction), create, run here."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="every job with its schedules and last run")
        show = actions.add_parser("show", help="a job's settings, schedules with their next runs, last runs and "
                                               "what its next run will do per VM")
        show.add_argument("job", help="job name or id")

        create = actions.add_parser("create", help="create a job (VMs by rule, or --vm for chosen VMs)")
        create.add_argument("name")
        create.add_argument("--store", required=True, help="data store name")
        create.add_argument("--description", default="")
        create.add_argument("--disabled", action="store_true", help="create it disabled (its schedules do not fire)")
        rule = create.add_argument_group("which VMs (a rule is evaluated at each run)")
        rule.add_argument("--tag", action="append", default=[], help="VMs carrying this tag (repeatable: any of them)")
        rule.add_argument("--name-pattern", default="", help="shell-style pattern on the VM name, e.g. web-*")
        rule.add_argument("--pool", action="append", default=[], help="only VMs of this pool (name; repeatable)")
        rule.add_argument("--power-state", action="append", default=[], help="only VMs in this power state")
        rule.add_argument("--vm", action="append", default=[],
                          help="back up exactly this VM (name or uuid; repeatable) instead of a rule")
        rule.add_argument("--exclude-vm", action="append", default=[], help="never this VM (name or uuid)")
        how = create.add_argument_group("how")
        how.add_argument("--method", choices=BackupMethod.values, default=BackupMethod.NORMAL)
        how.add_argument("--quiesce-fallback", choices=QuiesceFallback.values, default=QuiesceFallback.NORMAL)
        how.add_argument("--transfer-compression", choices=["none", "zstd", "gzip"], default="none")
        how.add_argument("--full-only", action="store_true", help="always full backups")
        how.add_argument("--full-every", type=int, default=0, help="a full backup after N incrementals in a row")
        how.add_argument("--full-on", default="", help="full backups on these weekdays, e.g. sun or sat,sun")
        how.add_argument("--max-parallel", type=int, default=2, help="VMs backed up at once")
        how.add_argument("--window-minutes", type=int, help="VMs not started this long after the run began are skipped")
        how.add_argument("--rpo-hours", type=int, help="recovery point objective (default: from the schedules)")
        when = create.add_argument_group("when (one of)").add_mutually_exclusive_group()
        when.add_argument("--daily", metavar="HH:MM")
        when.add_argument("--weekly", metavar="DAYS@HH:MM", help="e.g. sat,sun@03:00 or mon-fri@22:00")
        when.add_argument("--every-hours", type=int, metavar="N")
        when.add_argument("--cron", metavar="EXPR", help='e.g. "0 22 * * 1-5"')
        create.add_argument("--timezone", default="UTC", help="time zone of the schedule, e.g. Europe/Berlin")
        create.add_argument("--schedule-kind", choices=ScheduleKind.values, default=ScheduleKind.AUTO)
        keep = create.add_argument_group("retention (applied after each run)")
        for rule_name in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
            keep.add_argument(f"--keep-{rule_name}", type=int, default=7 if rule_name == "last" else 0)
        keep.add_argument("--deleted-vm-keep-days", type=int, default=90,
                          help="a VM deleted from its pool keeps its newest point this many days")

        run = actions.add_parser("run", help="run a job now, here, with a progress bar")
        run.add_argument("job", help="job name or id")
        run.add_argument("--queue", action="store_true", help="queue the run on the worker cluster and return")

    def handle(self, *args, action, **options):
        with acting_as(None, source="cli:job"):
            return getattr(self, f"_{action}")(**options)

    # -- list / show ----------------------------------------------------------------------------
    def _list(self, **options):
        jobs = BackupJob.objects.select_related("store").prefetch_related("schedules").order_by("name")
        if not jobs:
            self.stdout.write("No backup jobs (manage.py job create).")
            return
        self.stdout.write(f"{'ID':>4} {'NAME':<24} {'STATE':<8} {'STORE':<16} {'SCHEDULES':<36} LAST RUN")
        for job in jobs:
            when = "; ".join(str(s) for s in job.schedules.all() if s.enabled) or "Run now only"
            last = job.runs.order_by("-created_at").first()
            last_text = f"#{last.pk} {last.created_at:%Y-%m-%d %H:%M} {last.get_status_display()}" if last else "never"
            self.stdout.write(f"{job.pk:>4} {job.name[:24]:<24} {'enabled' if job.enabled else 'disabled':<8} "
                              f"{job.store.name[:16]:<16} {when[:36]:<36} {last_text}")

    def _show(self, job, **options):
        job = find_job(job)
        out = self.stdout.write
        out(f"Job {job.name} (#{job.pk}), {'enabled' if job.enabled else 'disabled'}")
        if job.description:
            out(f"  {job.description}")
        out(f"  VMs:        {self._selection(job)}")
        kind = "full only" if not job.incremental else "incremental where possible" + (
            f", a full after {job.full_every} incrementals" if job.full_every else "") + (
            f", full on {', '.join(DAY_NAMES[int(d)] for d in job.full_on_weekdays)}" if job.full_on_weekdays else "")
        out(f"  Method:     {job.get_method_display()}; {kind}; host compression {job.transfer_compression}")
        rpo = job.rpo()
        out(f"  Data store: {job.store.name}; {job.max_parallel_vms} VM(s) at once"
            + (f"; run window {job.window_minutes} min" if job.window_minutes else "")
            + (f"; RPO {rpo.total_seconds() / 3600:g} h" if rpo else "; no RPO (no schedule)"))
        rules = [f"{n} {getattr(job, 'keep_' + n)}" for n in ("last", "hourly", "daily", "weekly", "monthly", "yearly")
                 if getattr(job, "keep_" + n)]
        out(f"  Retention:  keep {', '.join(rules) or 'everything'}; a deleted VM's last point "
            f"{job.deleted_vm_keep_days} days")
        out("Schedules:")
        for schedule in job.schedules.all():
            state = "" if schedule.enabled else " (disabled)"
            out(f"  #{schedule.pk} {schedules.describe(schedule.cron)} [{schedule.cron}] {schedule.timezone}, "
                f"{schedule.get_kind_display().lower()}{state}")
            if schedule.enabled and job.enabled:
                times = schedules.next_times(schedule.cron, schedule.timezone, 5)
                out("     next: " + ", ".join(f"{t:%Y-%m-%d %H:%M %Z}" for t in times))
            if schedule.last_missed_at:
                out(f"     missed {schedule.last_missed_count} run(s) since {schedule.last_missed_at:%Y-%m-%d %H:%M} UTC "
                    "(ran once to catch up)")
        if not job.schedules.exists():
            out("  none: the job runs only when started by hand")
        out("Last runs:")
        runs = list(job.runs.order_by("-created_at")[:5])
        for run in runs:
            counts = {}
            for status in run.vm_backups.values_list("status", flat=True):
                counts[status] = counts.get(status, 0) + 1
            summary = ", ".join(f"{n} {RunStatus(s).label.lower()}" for s, n in counts.items()) or "no VM"
            out(f"  #{run.pk} {run.created_at:%Y-%m-%d %H:%M} UTC {run.get_trigger_display():<12} "
                f"{run.get_status_display():<24} {summary}" + (f" - {run.message}" if run.message else ""))
        if not runs:
            out("  never run")
        out("Next run (per VM):")
        vms = list(select_vms(job))
        for vm in vms:
            _kind, reason = predict_kind(job, vm.uuid)
            out(f"  {vm.name:<24} {reason}")
        if not vms:
            out("  no VM matches the job's selection now")

    @staticmethod
    def _selection(job):
        if job.selection == SelectionMode.EXPLICIT:
            text = "chosen: " + ", ".join(vm.name for vm in job.vms.all())
        else:
            parts = [f"tags {', '.join(job.rule_tags)}" if job.rule_tags else "",
                     f"name {job.rule_name_pattern}" if job.rule_name_pattern else "",
                     f"pools {', '.join(p.name for p in job.rule_pools.all())}" if job.rule_pools.exists() else "",
                     f"power state {', '.join(job.rule_power_states)}" if job.rule_power_states else ""]
            text = "rule: " + ("; ".join(p for p in parts if p) or "every VM")
        excluded = ", ".join(vm.name for vm in job.excluded_vms.all())
        return text + (f"; except {excluded}" if excluded else "")

    # -- create ------------------------------------------------------------------------------------
    def _create(self, name, **options):
        store = find_store(options["store"])
        pools = []
        for pool_name in options["pool"]:
            pool = Pool.objects.filter(name=pool_name).first()
            if pool is None:
                raise CommandError(f"no pool named {pool_name!r}")
            pools.append(pool.pk)
        explicit = bool(options["vm"])
        if explicit and (options["tag"] or options["name_pattern"] or pools or options["power_state"]):
            raise CommandError("--vm chooses the VMs; it cannot be combined with --tag, --name-pattern, --pool "
                               "or --power-state")
        data = {
            "name": name, "description": options["description"], "enabled": not options["disabled"],
            "store": store.pk, "selection": SelectionMode.EXPLICIT if explicit else SelectionMode.RULE,
            "vms": [find_vm(v).pk for v in options["vm"]], "excluded_vms": [find_vm(v).pk for v in options["exclude_vm"]],
            "rule_pools": pools, "rule_tags": options["tag"], "rule_name_pattern": options["name_pattern"],
            "rule_power_states": options["power_state"],
            "method": options["method"], "quiesce_fallback": options["quiesce_fallback"],
            "transfer_compression": options["transfer_compression"], "incremental": not options["full_only"],
            "full_every": options["full_every"],
            "full_on_weekdays": parse_days(options["full_on"]) if options["full_on"] else [],
            "max_parallel_vms": options["max_parallel"], "window_minutes": options["window_minutes"],
            "rpo_hours": options["rpo_hours"], "deleted_vm_keep_days": options["deleted_vm_keep_days"],
            **{f"keep_{n}": options[f"keep_{n}"] for n in ("last", "hourly", "daily", "weekly", "monthly", "yearly")},
        }
        form = BackupJobSerializer(data=data)
        if not form.is_valid():
            raise CommandError(f"the job was not created: {problems(form.errors)}")
        cron = schedule_cron(options)
        with transaction.atomic():
            job = form.save()
            job_saved(job)
            if cron:
                schedule_form = JobScheduleSerializer(data={"job": job.pk, "cron": cron, "timezone": options["timezone"],
                                                            "kind": options["schedule_kind"]})
                if not schedule_form.is_valid():
                    raise CommandError(f"the job was not created: {problems(schedule_form.errors)}")
                schedule_saved(schedule_form.save())
        self.stdout.write(self.style.SUCCESS(f"Backup job {job.name} (#{job.pk}) created; it selects "
                                             f"{select_vms(job).count()} VM(s) now."))
        for schedule in job.schedules.all():
            first = schedules.next_times(schedule.cron, schedule.timezone, 1)[0]
            self.stdout.write(f"Schedule: {schedules.describe(schedule.cron)} ({schedule.timezone}), "
                              f"first run {first:%Y-%m-%d %H:%M %Z}.")

    # -- run -------------------------------------------------------------------------------------
    def _run(self, job, queue=False, **options):
        job = find_job(job)
        if queue:
            task_id = queue_job_run(job)
            self.stdout.write(f"A run of job {job.name} was queued on the workers (task {task_id}).")
            return
        try:
            run = start_job_run(job, trigger=Trigger.CLI, to_workers=False)
        except JobRunError as exc:
            raise CommandError(f"job {job.name} did not run: {exc}") from None
        rows = list(run.vm_backups.order_by("pk"))
        self.stdout.write(f"Run #{run.pk} of job {job.name}: {len(rows)} VM(s), at most {job.max_parallel_vms} at once."
                          + (f" {run.message}." if run.message else ""))
        try:
            self._follow(run)
        except KeyboardInterrupt:
            # Ctrl-C: queued VMs are cancelled, running ones stop at their next step and remove
            # their snapshots; wait for that (a second Ctrl-C leaves it to the watchdog).
            self.stderr.write("Interrupted: cancelling the run; running backups stop and clean up...")
            cancel_run(run)
            self._follow(run)
        finish_run_if_done(run.pk)
        run.refresh_from_db()
        plan = finish_job_run(run) if run.is_finished else None
        rows = list(run.vm_backups.order_by("pk"))
        good = [r for r in rows if r.status in GOOD]
        line = (f"Run #{run.pk} {run.get_status_display().lower()}: {len(good)} of {len(rows)} VM(s) backed up"
                + (f"; retention removed {len(plan.remove)} restore point(s)" if plan and plan.remove else ""))
        if len(good) < len(rows):
            raise CommandError(line, returncode=VM_NOT_BACKED_UP)
        self.stdout.write(self.style.SUCCESS(line))

    def _follow(self, run):
        """Back the run's VMs up in threads here, as slots free up, until none is left."""
        threads, reported = {}, set()
        bar = ProgressBar(self.stdout, label=f"run #{run.pk}")
        while True:
            for pk in claim_next(run.pk):
                threads[pk] = threading.Thread(target=self._back_up, args=(pk,), daemon=True, name=f"vm-backup-{pk}")
                threads[pk].start()
            rows = list(run.vm_backups.order_by("pk"))
            for row in rows:
                if row.status not in (RunStatus.QUEUED, RunStatus.RUNNING) and row.pk not in reported:
                    reported.add(row.pk)
                    bar.note(self._outcome(row))
            busy = [r for r in rows if r.status in (RunStatus.QUEUED, RunStatus.RUNNING)]
            if not busy and not any(t.is_alive() for t in threads.values()):
                break
            done = sum(1.0 if r.pk in reported else r.progress for r in rows)
            running = ", ".join(f"{r.vm_name} {r.progress * 100:.0f}%" for r in busy if r.status == RunStatus.RUNNING)
            bar.update(done / len(rows), f"{len(reported)}/{len(rows)} done" + (f"; {running}" if running else ""))
            time.sleep(0.5)
        bar.done()

    @staticmethod
    def _back_up(vm_backup_id):
        try:
            if not skip_if_window_closed(vm_backup_id):
                run_vm_backup(vm_backup_id)
        finally:
            close_old_connections()

    def _outcome(self, row):
        text = f"{row.vm_name}: {row.get_status_display().lower()}"
        if row.status in GOOD:
            seconds = row.duration_seconds or 0
            text += (f", {row.get_kind_display().lower()} in {seconds:.1f} s, read {human_bytes(row.bytes_read)}, "
                     f"stored {human_bytes(row.bytes_stored)}")
            text += "".join(f"\n  warning: {w}" for w in row.warnings)
            return self.style.SUCCESS(text) if row.status == RunStatus.SUCCESS else self.style.WARNING(text)
        return self.style.ERROR(text + (f": {row.error}" if row.error else ""))

