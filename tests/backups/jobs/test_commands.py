"""manage.py job list | show | create | run, and protect / unprotect: what an administrator
scripts, validated like the API, audited as the command line, with exit codes that tell a
run where a VM was not backed up from one that went well."""
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, ManagementUtility, call_command
from django_q.models import OrmQ, Schedule

from backups.choices import RunStatus, Trigger
from backups.jobs import schedules
from backups.models import BackupJob, BackupRun, JobSchedule, RestorePoint
from sesamweb.audit.models import AuditEvent
from xenpools.models import VM, Pool


@pytest.fixture
def inventory(store):
    """The simulator's VM names as inventory rows only, for commands that do not talk to a pool."""
    pool = Pool.objects.create(name="lab", address="127.0.0.1", uuid="pool-uuid", product_version="8.2.1")
    for number in range(1, 5):
        VM.objects.create(pool=pool, uuid=f"0000000{number}-0000-0000-0000-000000000000", ref=f"OpaqueRef:{number}",
                          name=f"test-vm-{number}", power_state="Running")
    return pool


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_job_create_makes_a_rule_job_with_a_schedule_in_its_time_zone_audited_as_the_cli(inventory):
    out = run("job", "create", "web", "--store", "local", "--tag", "nightly", "--name-pattern", "test-vm-*",
              "--pool", "lab", "--exclude-vm", "test-vm-4", "--weekly", "mon-fri@22:30", "--timezone", "Europe/Berlin",
              "--keep-last", "3", "--keep-daily", "7", "--max-parallel", "3", "--full-on", "sun")

    job = BackupJob.objects.get(name="web")
    assert (job.selection, job.rule_tags, job.rule_name_pattern, job.keep_last, job.keep_daily) == (
        "rule", ["nightly"], "test-vm-*", 3, 7)
    assert ([p.name for p in job.rule_pools.all()], [v.name for v in job.excluded_vms.all()]) == (["lab"], ["test-vm-4"])
    assert (job.max_parallel_vms, job.full_on_weekdays, job.store.name) == (3, [6], "local")
    schedule = job.schedules.get()
    assert (schedule.cron, schedule.timezone) == ("30 22 * * 1,2,3,4,5", "Europe/Berlin")
    row = Schedule.objects.get(pk=schedule.q_schedule_id)
    assert row.func == schedules.RUN_JOB_TASK
    assert row.next_run == schedules.next_times(schedule.cron, "Europe/Berlin", 1)[0]
    assert "created; it selects 0 VM(s) now" in out and "first run" in out
    events = AuditEvent.objects.filter(target_type="backups.backupjob").order_by("sequence")
    assert [(e.action, e.source, e.actor_username) for e in events] == [("create", "cli:job", ""),
                                                                        ("create", "cli:job", "")]


@pytest.mark.parametrize("args, message", [
    (["--cron", "0 25 * * *"], "cron: '0 25 * * *' is not a valid cron expression"),
    (["--daily", "03:00", "--timezone", "Mars/Olympus"], "timezone: unknown time zone 'Mars/Olympus'"),
    (["--daily", "25:00"], "--daily takes a time as HH:MM"),
    (["--weekly", "someday@03:00"], "unknown weekday"),
    (["--every-hours", "30"], "every N hours needs N between 1 and 23"),
    (["--vm", "test-vm-1", "--tag", "x"], "cannot be combined"),
    (["--max-parallel", "0", "--method", "sideways"], "invalid choice: 'sideways'"),
    (["--max-parallel", "0"], "max_parallel_vms:"),
    (["--vm", "no-such-vm"], "no VM with uuid or name 'no-such-vm'"),
])
def test_job_create_refuses_bad_input_and_creates_nothing(inventory, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace("*", r"\*")):
        run("job", "create", "bad", "--store", "local", *args)
    assert not BackupJob.objects.exists() and not JobSchedule.objects.exists()
    assert not Schedule.objects.filter(func=schedules.RUN_JOB_TASK).exists()
    assert not AuditEvent.objects.filter(target_type="backups.backupjob").exists()


def test_job_create_needs_a_known_store_and_a_new_name(inventory):
    with pytest.raises(CommandError, match="no data store named 'nas'"):
        run("job", "create", "x", "--store", "nas")
    run("job", "create", "x", "--store", "local")
    with pytest.raises(CommandError, match="name: backup job with this name already exists"):
        run("job", "create", "x", "--store", "local")


def test_job_list_and_show_give_schedules_next_runs_last_runs_and_the_prediction(inventory):
    run("job", "create", "pair", "--store", "local", "--vm", "test-vm-1", "--vm", "test-vm-2", "--daily", "22:00")
    job = BackupJob.objects.get(name="pair")
    BackupRun.objects.create(job=job, trigger=Trigger.SCHEDULE, status=RunStatus.FAILED, message="pool unreachable")

    listing = run("job", "list")
    assert "pair" in listing and "At 22:00 (UTC)" in listing and "Failed" in listing
    shown = run("job", "show", "pair")
    assert "chosen: test-vm-1, test-vm-2" in shown
    assert "At 22:00 [0 22 * * *] UTC" in shown
    next_runs = schedules.next_times("0 22 * * *", "UTC", 5)
    assert "next: " + ", ".join(f"{t:%Y-%m-%d %H:%M %Z}" for t in next_runs) in shown
    assert "pool unreachable" in shown
    assert shown.count("full: no earlier restore point on this data store") == 2
    assert run("job", "show", str(job.pk)) == shown
    with pytest.raises(CommandError, match="no backup job named 'nope'; jobs: pair"):
        run("job", "show", "nope")


@pytest.mark.slow
def test_job_run_backs_up_here_within_the_limit_and_the_second_run_is_incremental(pool, store, monkeypatch):
    from backups.management.commands import job as job_command

    run("job", "create", "glob", "--store", "local", "--name-pattern", "test-vm-?", "--exclude-vm", "test-vm-4",
        "--max-parallel", "2")
    in_flight, most, lock = [0], [0], threading.Lock()
    real_backup = job_command.run_vm_backup

    def counting(pk):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            return real_backup(pk)
        finally:
            with lock:
                in_flight[0] -= 1
    monkeypatch.setattr(job_command, "run_vm_backup", counting)

    out = run("job", "run", "glob")

    job_run = BackupRun.objects.get(job__name="glob")
    assert job_run.trigger == Trigger.CLI and job_run.status == RunStatus.SUCCESS
    names = sorted(job_run.vm_backups.values_list("vm_name", flat=True))
    assert names == ["test-vm-1", "test-vm-2", "test-vm-3"]
    assert 1 <= most[0] <= 2
    for name in names:
        assert f"{name}: succeeded, full in" in out
    assert f"Run #{job_run.pk} succeeded: 3 of 3 VM(s) backed up" in out
    assert RestorePoint.objects.filter(job__name="glob").count() == 3
    assert not OrmQ.objects.exists()                  # nothing was handed to a worker cluster
    assert AuditEvent.objects.filter(action="job_start", source="cli:job").exists()

    again = run("job", "run", "glob")
    assert again.count("succeeded, incremental in") == 3


@pytest.mark.slow
def test_job_run_exits_non_zero_and_says_which_vm_failed(pool, store, sim):
    run("job", "create", "pair", "--store", "local", "--vm", "test-vm-1", "--vm", "test-vm-2", "--max-parallel", "1")
    sim.control.fail_next_call("VM.snapshot", ["SR_BACKEND_FAILURE_82", "", "timeout", ""])
    out = StringIO()
    with pytest.raises(CommandError, match=r"failed: 1 of 2 VM\(s\) backed up") as failure:
        call_command("job", "run", "pair", stdout=out, stderr=StringIO())
    assert failure.value.returncode == 3
    assert "test-vm-1: failed" in out.getvalue() and "SR_BACKEND_FAILURE_82" in out.getvalue()
    assert "test-vm-2: succeeded" in out.getvalue()

    # As a script sees it: the process exits with 3.
    sim.control.fail_next_call("VM.snapshot", ["SR_BACKEND_FAILURE_82", "", "timeout", ""])
    with pytest.raises(SystemExit) as exited:
        ManagementUtility(["manage.py", "job", "run", "pair"]).execute()
    assert exited.value.code == 3


def test_ctrl_c_during_job_run_cancels_the_run_and_exits_non_zero(inventory, monkeypatch):
    from backups.management.commands import job as job_command

    run("job", "create", "pair", "--store", "local", "--vm", "test-vm-1", "--vm", "test-vm-2")
    real_claim = job_command.claim_next
    calls = []

    def interrupted_once(run_id):
        calls.append(run_id)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_claim(run_id)
    monkeypatch.setattr(job_command, "claim_next", interrupted_once)

    with pytest.raises(CommandError, match=r"cancelled: 0 of 2 VM\(s\) backed up") as failure:
        run("job", "run", "pair")
    assert failure.value.returncode == 3
    job_run = BackupRun.objects.get(job__name="pair")
    assert set(job_run.vm_backups.values_list("status", flat=True)) == {RunStatus.CANCELLED}
    assert AuditEvent.objects.filter(action="job_cancel", source="cli:job").exists()


def test_job_run_queue_hands_the_run_to_the_workers(inventory):
    run("job", "create", "later", "--store", "local", "--tag", "x")
    out = run("job", "run", "later", "--queue")
    [queued] = OrmQ.objects.all()
    assert queued.task["func"] == "backups.jobs.tasks.run_job" and "queued on the workers" in out


def test_job_run_with_nothing_selected_says_so_and_exits_zero(inventory):
    run("job", "create", "empty", "--store", "local", "--tag", "no-vm-has-this")
    out = run("job", "run", "empty")
    assert "no VM matches the job's selection" in out and "0 of 0 VM(s) backed up" in out


def test_protect_and_unprotect_a_point_from_the_command_line(store):
    from django.utils import timezone

    point = RestorePoint.objects.create(store=store, point_id="vm-1/20260101T000000", vm_uuid="vm-1", vm_name="db-01",
                                        taken_at=timezone.now(), method="normal", kind="full")
    out = run("protect", "local:vm-1/20260101T000000", "--note", "kept for the auditors")
    point.refresh_from_db()
    assert (point.protected, point.protected_note) == (True, "kept for the auditors") and "protected." in out
    assert "is protected already" in run("protect", str(point.pk), "--note", "kept for the auditors")
    assert "unprotected." in run("unprotect", "vm-1/20260101T000000")
    point.refresh_from_db()
    assert (point.protected, point.protected_note) == (False, "")
    events = AuditEvent.objects.filter(target_type="backups.restorepoint").order_by("sequence")
    assert [(e.source, e.after["protected"]) for e in events] == [("cli:protect", True), ("cli:unprotect", False)]
    with pytest.raises(CommandError, match="no restore point 'nope'"):
        run("protect", "nope")
