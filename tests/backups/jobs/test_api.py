"""REST API of backup jobs: the roles of the pages (auditors read, operators run, cancel,
retry and protect, administrators change jobs and schedules), validation that says what is
wrong, schedules kept in step with django-q2, what a job would do now (VMs, full or
incremental, prune plan), every change audited and no secret in any body."""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from rest_framework.test import APIClient

from backups.choices import BackupKind, RunStatus, Trigger
from backups.jobs import schedules
from backups.models import BackupJob, BackupRun, JobSchedule, RestorePoint, VmBackup, VmChangeTracking
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from sesamweb.audit.models import AuditEvent
from xenpools.models import VM, Pool

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def lab(db):
    """Inventory rows only (no simulator): three VMs, two tagged "nightly"."""
    pool = Pool.objects.create(name="lab", address="127.0.0.1", uuid="pool-uuid", product_version="8.2.1")
    pool.set_password("pool-secret-password")
    pool.save()
    for number, tags, power in [(1, ["nightly"], "Running"), (2, ["nightly", "db"], "Halted"), (3, [], "Running")]:
        VM.objects.create(pool=pool, uuid=f"0000000{number}-0000-0000-0000-000000000000", ref=f"OpaqueRef:{number}",
                          name=f"web-0{number}", power_state=power, tags=tags, tags_index=VM.index_tags(tags))
    return pool


@pytest.fixture
def data_store(tmp_path, db):
    return create_store(name="nas", path=str(tmp_path / "store"), passphrase=PASSPHRASE)


@pytest.fixture
def job(lab, data_store):
    return BackupJob.objects.create(name="nightly", store=data_store, rule_tags=["nightly"], keep_last=3)


def job_body(store, **fields):
    return {"name": "web servers", "store": store.pk, "selection": "rule", "rule_tags": ["nightly"],
            "rule_name_pattern": "web-*", "method": "normal", "keep_last": 5, "keep_daily": 7,
            "max_parallel_vms": 3, "window_minutes": 120, **fields}


def job_q_rows():
    return Schedule.objects.filter(func=schedules.RUN_JOB_TASK)


def point(job, vm_uuid, days_ago, **fields):
    taken = timezone.now() - timedelta(days=days_ago)
    return RestorePoint.objects.create(store=job.store, job=job, point_id=f"{vm_uuid}/{taken:%Y%m%dT%H%M%S}",
                                       vm_uuid=vm_uuid, vm_name=vm_uuid[:8], taken_at=taken, method="normal",
                                       kind=fields.pop("kind", BackupKind.FULL), **fields)


# -- roles ---------------------------------------------------------------------------------

def test_anonymous_callers_get_401_and_users_without_a_role_403(job):
    anonymous = APIClient()
    assert anonymous.get("/api/jobs/").status_code == 401
    assert anonymous.post(f"/api/jobs/{job.pk}/run/").status_code == 401
    assert anonymous.get("/api/job-schedules/").status_code == 401


def test_a_user_without_a_role_cannot_read_jobs(api_client, job):
    assert api_client(None).get("/api/jobs/").status_code == 403


def test_an_auditor_reads_jobs_but_changes_and_runs_nothing(api_client, job, data_store):
    auditor = api_client(Role.AUDITOR)
    assert [j["name"] for j in auditor.get("/api/jobs/").json()["results"]] == ["nightly"]
    assert auditor.get(f"/api/jobs/{job.pk}/").status_code == 200
    assert auditor.get(f"/api/jobs/{job.pk}/preview/").status_code == 200
    assert auditor.post("/api/jobs/", job_body(data_store), format="json").status_code == 403
    assert auditor.patch(f"/api/jobs/{job.pk}/", {"enabled": False}, format="json").status_code == 403
    assert auditor.delete(f"/api/jobs/{job.pk}/").status_code == 403
    assert auditor.post(f"/api/jobs/{job.pk}/run/").status_code == 403
    assert auditor.post("/api/job-schedules/", {"job": job.pk, "cron": "0 22 * * *"}, format="json").status_code == 403
    assert not OrmQ.objects.exists() and BackupJob.objects.get().enabled


def test_an_operator_runs_a_job_but_does_not_create_change_or_delete_one(api_client, job, data_store):
    operator = api_client(Role.OPERATOR)
    assert operator.post("/api/jobs/", job_body(data_store), format="json").status_code == 403
    assert operator.patch(f"/api/jobs/{job.pk}/", {"keep_last": 1}, format="json").status_code == 403
    assert operator.delete(f"/api/jobs/{job.pk}/").status_code == 403
    assert operator.post("/api/job-schedules/", {"job": job.pk, "cron": "0 22 * * *"}, format="json").status_code == 403
    assert operator.post(f"/api/jobs/{job.pk}/run/").status_code == 202
    assert BackupJob.objects.get().keep_last == 3


# -- CRUD ------------------------------------------------------------------------------------

def test_an_administrator_creates_changes_and_deletes_a_job_and_each_step_is_audited(api_client, lab, data_store):
    admin = api_client(Role.ADMINISTRATOR)
    excluded = VM.objects.get(name="web-02")
    response = admin.post("/api/jobs/", job_body(data_store, excluded_vms=[excluded.pk], full_on_weekdays=[6, 5, 6],
                                                 rule_power_states=["Running"]), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["store_name"], body["rule_tags"], body["excluded_vms"], body["full_on_weekdays"]) == (
        "nas", ["nightly"], [excluded.pk], [5, 6])
    assert (body["keep_last"], body["keep_daily"], body["max_parallel_vms"], body["window_minutes"]) == (5, 7, 3, 120)
    assert body["schedules"] == [] and body["rpo_seconds"] is None
    job = BackupJob.objects.get(name="web servers")

    response = admin.patch(f"/api/jobs/{job.pk}/", {"keep_last": 9, "rpo_hours": 30}, format="json")
    assert response.status_code == 200 and response.json()["rpo_seconds"] == 30 * 3600
    scratch = "0b7c6f2e-8d1a-4c8e-9f4e-2a6c1d9b3e57"
    response = admin.patch(f"/api/jobs/{job.pk}/", {"excluded_disks": [scratch.upper(), scratch]}, format="json")
    assert response.status_code == 200 and response.json()["excluded_disks"] == [scratch]
    assert admin.patch(f"/api/jobs/{job.pk}/", {"excluded_disks": ["sda"]}, format="json").status_code == 400
    assert admin.delete(f"/api/jobs/{job.pk}/").status_code == 204
    assert not BackupJob.objects.exists()

    events = list(AuditEvent.objects.filter(target_type="backups.backupjob").order_by("sequence"))
    assert [(e.action, e.actor_username) for e in events] == [("create", admin.user.username),
                                                              ("update", admin.user.username),
                                                              ("update", admin.user.username),
                                                              ("delete", admin.user.username)]
    assert events[1].before["keep_last"] == 5 and events[1].after["keep_last"] == 9


def test_job_input_errors_are_400_per_field(api_client, lab, data_store):
    admin = api_client(Role.ADMINISTRATOR)
    response = admin.post("/api/jobs/", job_body(data_store, selection="explicit", vms=[]), format="json")
    assert response.status_code == 400 and list(response.json()) == ["vms"]
    response = admin.post("/api/jobs/", {**job_body(data_store), "store": 9999, "method": "sideways",
                                         "max_parallel_vms": 0, "rule_power_states": ["Sleeping"],
                                         "full_on_weekdays": [7]}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"store", "method", "max_parallel_vms", "rule_power_states", "full_on_weekdays"}
    admin.post("/api/jobs/", job_body(data_store), format="json")
    again = admin.post("/api/jobs/", job_body(data_store), format="json")
    assert again.status_code == 400 and "name" in again.json()
    assert admin.get("/api/jobs/9999/").status_code == 404
    assert BackupJob.objects.count() == 1


def test_schedules_follow_their_django_q_rows_through_create_change_disable_and_delete(api_client, job):
    admin = api_client(Role.ADMINISTRATOR)
    response = admin.post("/api/job-schedules/", {"job": job.pk, "cron": "30  22 * * 1-5", "timezone": "Europe/Berlin"},
                          format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["cron"] == "30 22 * * 1-5"
    assert "10:30 PM" in body["description"] or "22:30" in body["description"]
    assert len(body["next_runs"]) == 5 and body["next_runs"][0].endswith(("+01:00", "+02:00"))
    schedule = JobSchedule.objects.get(pk=body["id"])
    row = Schedule.objects.get(pk=schedule.q_schedule_id)
    assert (row.func, row.cron, row.args) == (schedules.RUN_JOB_TASK, "30 22 * * 1-5", repr((job.pk,)))
    assert row.next_run == schedules.next_times("30 22 * * 1-5", "Europe/Berlin", 1)[0]

    [nested] = admin.get(f"/api/jobs/{job.pk}/").json()["schedules"]
    assert nested["id"] == schedule.pk and nested["next_runs"] == body["next_runs"]

    assert admin.patch(f"/api/job-schedules/{schedule.pk}/", {"cron": "0 3 * * *"}, format="json").status_code == 200
    assert Schedule.objects.get(pk=row.pk).cron == "0 3 * * *"
    admin.patch(f"/api/jobs/{job.pk}/", {"enabled": False}, format="json")
    assert not job_q_rows()                         # a disabled job's schedules do not fire
    admin.patch(f"/api/jobs/{job.pk}/", {"enabled": True}, format="json")
    assert job_q_rows().count() == 1
    assert admin.delete(f"/api/job-schedules/{schedule.pk}/").status_code == 204
    assert not job_q_rows() and not JobSchedule.objects.exists()

    admin.post("/api/job-schedules/", {"job": job.pk, "cron": "0 * * * *"}, format="json")
    assert job_q_rows().count() == 1
    admin.delete(f"/api/jobs/{job.pk}/")
    assert not job_q_rows()
    assert AuditEvent.objects.filter(target_type="backups.backupjob", message__contains="schedule").count() == 4


def test_a_bad_cron_or_an_unknown_time_zone_is_a_400_that_says_why(api_client, job):
    admin = api_client(Role.ADMINISTRATOR)
    response = admin.post("/api/job-schedules/", {"job": job.pk, "cron": "0 25 * * *", "timezone": "Mars/Olympus"},
                          format="json")
    assert response.status_code == 400
    assert "not a valid cron expression" in response.json()["cron"][0]
    assert "unknown time zone" in response.json()["timezone"][0]
    response = admin.post("/api/job-schedules/", {"job": job.pk, "cron": "every night"}, format="json")
    assert "five fields" in response.json()["cron"][0]
    assert not JobSchedule.objects.exists() and not job_q_rows()


def test_a_schedule_cannot_move_to_another_job(api_client, job, data_store):
    other = BackupJob.objects.create(name="other", store=data_store)
    schedule = JobSchedule.objects.create(job=job, cron="0 1 * * *")
    response = api_client(Role.ADMINISTRATOR).patch(f"/api/job-schedules/{schedule.pk}/", {"job": other.pk},
                                                    format="json")
    assert response.status_code == 400 and "job" in response.json()


# -- what the job would do now -----------------------------------------------------------------

def test_preview_lists_the_vms_the_rule_selects_now(api_client, job):
    auditor = api_client(Role.AUDITOR)
    assert [v["name"] for v in auditor.get(f"/api/jobs/{job.pk}/preview/").json()["results"]] == ["web-01", "web-02"]
    vm = VM.objects.get(name="web-03")
    VM.objects.filter(pk=vm.pk).update(tags=["nightly"], tags_index=VM.index_tags(["nightly"]))
    job.excluded_vms.add(VM.objects.get(name="web-01"))
    body = auditor.get(f"/api/jobs/{job.pk}/preview/").json()
    assert [v["name"] for v in body["results"]] == ["web-02", "web-03"] and body["count"] == 2


def test_prediction_says_full_or_incremental_per_vm_and_why(api_client, job):
    web1 = VM.objects.get(name="web-01")
    point(job, web1.uuid, 1, chain={"xvda": "snapshot-vdi"})
    response = api_client(Role.AUDITOR).get(f"/api/jobs/{job.pk}/prediction/")
    assert response.status_code == 200
    rows = {r["vm_name"]: (r["kind"], r["reason"]) for r in response.json()["results"]}
    assert rows == {"web-01": ("incremental", "incremental: changed blocks since the last restore point"),
                    "web-02": ("full", "full: no earlier restore point on this data store")}

    weekly_full = JobSchedule.objects.create(job=job, cron="0 4 * * 0", kind="full")
    rows = api_client(Role.AUDITOR).get(f"/api/jobs/{job.pk}/prediction/", {"schedule": weekly_full.pk}).json()
    assert {r["reason"] for r in rows["results"]} == {"full: this schedule makes full backups"}
    assert api_client(Role.AUDITOR).get(f"/api/jobs/{job.pk}/prediction/", {"schedule": "x"}).status_code == 400


def test_prediction_says_full_where_the_pool_refuses_changed_block_tracking(api_client, job):
    web1 = VM.objects.get(name="web-01")
    point(job, web1.uuid, 1, chain={"xvda": "snapshot-vdi"})
    VmChangeTracking.objects.create(vm_uuid=web1.uuid, pool=web1.pool, code="LICENCE_RESTRICTION",
                                    reason="the pool's licence does not include changed block tracking")
    rows = {r["vm_name"]: (r["kind"], r["reason"])
            for r in api_client(Role.AUDITOR).get(f"/api/jobs/{job.pk}/prediction/").json()["results"]}
    assert rows["web-01"] == ("full", "full: incrementals are not possible: "
                                      "the pool's licence does not include changed block tracking")


def test_prune_preview_shows_the_jobs_plan_or_a_proposed_one_and_changes_nothing(api_client, job):
    web1 = VM.objects.get(name="web-01")
    points = [point(job, web1.uuid, days) for days in (1, 2, 3, 4, 5)]
    RestorePoint.objects.filter(pk=points[4].pk).update(protected=True, protected_note="audit 2026")
    auditor = api_client(Role.AUDITOR)

    body = auditor.get(f"/api/jobs/{job.pk}/prune-preview/").json()
    assert body["policy"]["keep_last"] == 3
    assert [p["id"] for p in body["keep"]] == [points[0].pk, points[1].pk, points[2].pk, points[4].pk]
    assert [p["id"] for p in body["remove"]] == [points[3].pk]
    assert "protected" in body["keep"][3]["reasons"] and body["keep"][3]["protected"] is True

    body = auditor.get(f"/api/jobs/{job.pk}/prune-preview/", {"keep_last": 1}).json()
    assert (body["policy"]["keep_last"], body["policy"]["keep_daily"]) == (1, 0)
    assert [p["id"] for p in body["remove"]] == [points[1].pk, points[2].pk, points[3].pk]
    assert RestorePoint.objects.count() == 5

    response = auditor.get(f"/api/jobs/{job.pk}/prune-preview/", {"keep_last": -1})
    assert response.status_code == 400 and "keep_last" in response.json()


def test_prune_preview_lists_a_deleted_vms_points_under_their_own_retention(api_client, job):
    web2 = VM.objects.get(name="web-02")
    old, new = point(job, web2.uuid, 20), point(job, web2.uuid, 10)
    VM.objects.filter(pk=web2.pk).update(removed_at=timezone.now() - timedelta(days=5))
    body = api_client(Role.AUDITOR).get(f"/api/jobs/{job.pk}/prune-preview/", {"deleted_vm_keep_days": 30}).json()
    assert [p["id"] for p in body["keep"]] == [new.pk] and [p["id"] for p in body["remove"]] == [old.pk]
    [deleted] = body["deleted_vms"]
    assert deleted["vm_uuid"] == web2.uuid
    body = api_client(Role.AUDITOR).get(f"/api/jobs/{job.pk}/prune-preview/", {"deleted_vm_keep_days": 1}).json()
    assert body["keep"] == [] and len(body["remove"]) == 2


# -- run, retry, cancel --------------------------------------------------------------------------

def test_run_now_queues_the_job_task_and_the_task_starts_a_run_for_the_caller(api_client, job,
                                                                             django_capture_on_commit_callbacks):
    from backups.jobs.tasks import run_job

    operator = api_client(Role.OPERATOR)
    response = operator.post(f"/api/jobs/{job.pk}/run/")
    assert response.status_code == 202 and response.json()["task_id"]
    [queued] = OrmQ.objects.all()
    task = queued.task
    assert (task["func"], task["args"]) == ("backups.jobs.tasks.run_job", (job.pk,))
    assert task["kwargs"]["trigger"] == Trigger.MANUAL and task["kwargs"]["user_id"] == operator.user.pk
    requested = AuditEvent.objects.get(action="job_start", target_type="backups.backupjob")
    assert requested.actor_username == operator.user.username and "Run now requested" in requested.message

    with django_capture_on_commit_callbacks(execute=True):
        run_job(*task["args"], trigger=task["kwargs"]["trigger"], user_id=task["kwargs"]["user_id"])
    run = BackupRun.objects.get(job=job)
    assert run.requested_by == operator.user
    assert sorted(run.vm_backups.values_list("vm_name", flat=True)) == ["web-01", "web-02"]
    vm_tasks = [q.task for q in OrmQ.objects.all() if q.task["func"] == "backups.tasks.run_vm_backup_task"]
    assert len(vm_tasks) == 2                      # max_parallel_vms of the job


def job_run(job, statuses, **fields):
    run = BackupRun.objects.create(job=job, trigger=Trigger.SCHEDULE, status=fields.pop("status", RunStatus.FAILED),
                                   finished_at=timezone.now(), **fields)
    for vm, status in zip(VM.objects.filter(name__in=["web-01", "web-02"]).order_by("name"), statuses):
        VmBackup.objects.create(run=run, vm=vm, pool=vm.pool, vm_uuid=vm.uuid, vm_name=vm.name, store=job.store,
                                method="normal", status=status, error="boom" if status == RunStatus.FAILED else "")
    return run


def test_runs_filter_by_job_and_show_the_jobs_name(api_client, job, data_store):
    other = BackupJob.objects.create(name="other", store=data_store)
    mine, _theirs = job_run(job, [RunStatus.SUCCESS]), job_run(other, [RunStatus.SUCCESS])
    body = api_client(Role.AUDITOR).get("/api/runs/", {"job": job.pk}).json()
    assert [(r["id"], r["job"], r["job_name"]) for r in body["results"]] == [(mine.pk, job.pk, "nightly")]
    assert api_client(Role.AUDITOR).get("/api/runs/", {"job": 9999}).status_code == 400


def test_an_operator_retries_only_the_failed_vms_of_a_finished_run(api_client, job, monkeypatch):
    run = job_run(job, [RunStatus.SUCCESS, RunStatus.FAILED])
    assert api_client(Role.AUDITOR).post(f"/api/runs/{run.pk}/retry/").status_code == 403
    operator = api_client(Role.OPERATOR)
    response = operator.post(f"/api/runs/{run.pk}/retry/")
    assert response.status_code == 202, response.json()
    retry = BackupRun.objects.get(pk=response.json()["id"])
    assert [b["vm_name"] for b in response.json()["vm_backups"]] == ["web-02"]
    assert retry.job == job and retry.requested_by == operator.user and f"run #{run.pk}" in retry.message

    still_going = job_run(job, [RunStatus.RUNNING], status=RunStatus.RUNNING)
    response = operator.post(f"/api/runs/{still_going.pk}/retry/")
    assert response.status_code == 409 and "still going" in response.json()["detail"]
    all_good = job_run(job, [RunStatus.SUCCESS], status=RunStatus.SUCCESS)
    assert "no VM of this run failed" in operator.post(f"/api/runs/{all_good.pk}/retry/").json()["detail"]
    assert operator.post("/api/runs/9999/retry/").status_code == 404


def test_an_operator_cancels_one_vm_of_a_run_and_the_others_go_on(api_client, job):
    run = job_run(job, [RunStatus.QUEUED, RunStatus.QUEUED], status=RunStatus.RUNNING)
    first, second = run.vm_backups.order_by("vm_name")
    assert api_client(Role.AUDITOR).post(f"/api/vm-backups/{first.pk}/cancel/").status_code == 403
    operator = api_client(Role.OPERATOR)
    response = operator.post(f"/api/vm-backups/{first.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == RunStatus.CANCELLED
    second.refresh_from_db()
    assert second.status == RunStatus.QUEUED and second.dispatched_at is not None   # sent on to a worker
    assert operator.post(f"/api/vm-backups/{first.pk}/cancel/").status_code == 409
    assert AuditEvent.objects.filter(action="job_cancel", actor_username=operator.user.username).exists()
    listing = api_client(Role.AUDITOR).get("/api/vm-backups/", {"run": run.pk, "status": "cancelled"}).json()
    assert [b["id"] for b in listing["results"]] == [first.pk]


def test_a_whole_run_of_a_job_is_cancelled_by_the_existing_endpoint(api_client, job):
    run = job_run(job, [RunStatus.QUEUED, RunStatus.QUEUED], status=RunStatus.RUNNING)
    response = api_client(Role.OPERATOR).post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == RunStatus.CANCELLED
    assert set(run.vm_backups.values_list("status", flat=True)) == {RunStatus.CANCELLED}


# -- protection -----------------------------------------------------------------------------------

def test_an_operator_protects_and_unprotects_a_point_with_a_note_audited(api_client, job):
    kept = point(job, VM.objects.get(name="web-01").uuid, 3)
    assert api_client(Role.AUDITOR).post(f"/api/restore-points/{kept.pk}/protect/").status_code == 403
    operator = api_client(Role.OPERATOR)
    response = operator.post(f"/api/restore-points/{kept.pk}/protect/", {"note": "legal hold #12"}, format="json")
    assert response.status_code == 200
    assert (response.json()["protected"], response.json()["protected_note"], response.json()["job"],
            response.json()["job_name"]) == (True, "legal hold #12", job.pk, "nightly")
    listed = api_client(Role.AUDITOR).get("/api/restore-points/", {"protected": "true"}).json()["results"]
    assert [p["id"] for p in listed] == [kept.pk]
    assert operator.post(f"/api/restore-points/{kept.pk}/protect/", {"note": "x" * 201}, format="json").status_code == 400

    response = operator.post(f"/api/restore-points/{kept.pk}/unprotect/")
    assert response.status_code == 200 and response.json()["protected"] is False
    kept.refresh_from_db()
    assert (kept.protected, kept.protected_note) == (False, "")
    events = AuditEvent.objects.filter(target_type="backups.restorepoint").order_by("sequence")
    assert [(e.actor_username, e.after["protected"]) for e in events] == [(operator.user.username, True),
                                                                        (operator.user.username, False)]
    assert "legal hold #12" in events[0].message
    assert operator.post("/api/restore-points/9999/protect/").status_code == 404


@pytest.mark.slow
def test_a_point_protected_through_the_api_survives_prune_and_gc(api_client, make_job, vm_named, run_queued_tasks):
    from backups.jobs.runs import start_job_run
    from backups.maintenance import collect_garbage, prune_store, verify_points
    from backups.repository import RetentionPolicy

    job = make_job(selection="explicit")
    job.vms.add(vm_named("test-vm-1"))
    for _ in range(3):
        start_job_run(job, trigger=Trigger.MANUAL)
        run_queued_tasks()
    oldest, middle, newest = RestorePoint.objects.filter(job=job).order_by("taken_at")
    response = api_client(Role.OPERATOR).post(f"/api/restore-points/{oldest.pk}/protect/", {"note": "keep"},
                                              format="json")
    assert response.status_code == 200

    plan = prune_store(job.store, RetentionPolicy(keep_last=1))
    assert plan.remove == [middle.point_id]
    assert set(RestorePoint.objects.filter(job=job).values_list("pk", flat=True)) == {oldest.pk, newest.pk}
    collect_garbage(job.store, grace_period=0)
    report = verify_points(job.store, [oldest, newest])
    assert [(b.id, b.ok) for b in report.backups] == [(oldest.point_id, True), (newest.point_id, True)] \
        or sorted((b.id, b.ok) for b in report.backups) == sorted([(oldest.point_id, True), (newest.point_id, True)])


# -- secrets, limits, schema -------------------------------------------------------------------

def test_no_secret_of_the_store_or_the_pool_is_in_any_job_body(api_client, job):
    admin = api_client(Role.ADMINISTRATOR)
    JobSchedule.objects.create(job=job, cron="0 1 * * *")
    job_run(job, [RunStatus.SUCCESS])
    point(job, VM.objects.get(name="web-01").uuid, 1)
    bodies = [admin.get(url).content.decode() for url in (
        "/api/jobs/", f"/api/jobs/{job.pk}/", f"/api/jobs/{job.pk}/preview/", f"/api/jobs/{job.pk}/prediction/",
        f"/api/jobs/{job.pk}/prune-preview/", "/api/job-schedules/", "/api/runs/", "/api/vm-backups/",
        "/api/restore-points/")]
    secrets = [job.store.key_encrypted, PASSPHRASE, "pool-secret-password", Pool.objects.get().password_encrypted]
    for body in bodies:
        for secret in filter(None, secrets):
            assert secret not in body
        assert "key_encrypted" not in body and "password" not in body


def test_a_huge_limit_is_capped_instead_of_failing(api_client, job):
    job_run(job, [RunStatus.SUCCESS])
    point(job, VM.objects.get(name="web-01").uuid, 1)
    auditor = api_client(Role.AUDITOR)
    for url in ("/api/jobs/", "/api/runs/", "/api/restore-points/", f"/api/jobs/{job.pk}/preview/"):
        response = auditor.get(url, {"limit": 10**30, "offset": 10**30})
        assert response.status_code == 200, url
        response = auditor.get(url, {"limit": 10**30})
        assert response.status_code == 200 and len(response.json()["results"]) == response.json()["count"] > 0, url


def test_the_schema_documents_the_job_endpoints_with_their_errors(api_client):
    paths = api_client(Role.AUDITOR).get("/api/schema/", {"format": "json"}).json()["paths"]
    assert {"400", "404"} <= set(paths["/api/jobs/{id}/"]["patch"]["responses"])
    assert "400" in paths["/api/job-schedules/"]["post"]["responses"]
    for path in ("/api/jobs/{id}/preview/", "/api/jobs/{id}/prediction/", "/api/jobs/{id}/prune-preview/",
                 "/api/jobs/{id}/run/", "/api/runs/{id}/retry/", "/api/vm-backups/{id}/cancel/",
                 "/api/restore-points/{id}/protect/", "/api/restore-points/{id}/unprotect/"):
        assert path in paths
    assert "202" in paths["/api/jobs/{id}/run/"]["post"]["responses"]


def test_the_job_list_costs_the_same_queries_for_one_job_or_twenty(api_client, job, data_store,
                                                                    django_assert_max_num_queries):
    auditor = api_client(Role.AUDITOR)
    auditor.get("/api/jobs/")                       # the token user's first request warms its caches
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        auditor.get("/api/jobs/")
    for number in range(19):
        more = BackupJob.objects.create(name=f"job {number}", store=data_store, rule_tags=["x"])
        more.excluded_vms.add(VM.objects.first())
        JobSchedule.objects.create(job=more, cron="0 1 * * *")
        job_run(more, [RunStatus.SUCCESS])
    with django_assert_max_num_queries(len(one)):
        assert auditor.get("/api/jobs/").json()["count"] == 20
    job_run(job, [RunStatus.SUCCESS])
    with CaptureQueriesContext(connection) as runs_of_one:
        auditor.get("/api/runs/", {"job": job.pk})
    for _ in range(5):
        job_run(job, [RunStatus.SUCCESS, RunStatus.FAILED])
    with django_assert_max_num_queries(len(runs_of_one)):
        assert auditor.get("/api/runs/", {"job": job.pk}).json()["count"] == 6


def test_tags_match_with_their_case_on_every_database(api_client, job):
    """xapi's tags are case-sensitive strings; SQLite's LIKE would match "Nightly" too."""
    web3 = VM.objects.get(name="web-03")
    VM.objects.filter(pk=web3.pk).update(tags=["Nightly"], tags_index=VM.index_tags(["Nightly"]))
    names = [v["name"] for v in api_client(Role.AUDITOR).get(f"/api/jobs/{job.pk}/preview/").json()["results"]]
    assert names == ["web-01", "web-02"]
    assert [vm["name"] for vm in api_client(Role.AUDITOR).get("/api/vms/", {"tag": "Nightly"}).json()["results"]] \
        == ["web-03"]
