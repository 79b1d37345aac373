"""Job pages: who may see and change what, the job and schedule forms with their validation,
the live previews, Run now, retention preview and save, retry / cancel, protecting points."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from backups.choices import BackupKind, BackupMethod, RunStatus, Trigger
from backups.jobs.retention import preview
from backups.jobs.schedules import RUN_JOB_TASK, next_times
from backups.models import BackupJob, BackupRun, JobSchedule, RestorePoint, VmBackup
from backups.stores import create_store
from sesamweb.audit.models import AuditEvent
from xenpools.models import VM, Pool

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def inventory(db):
    lab = Pool.objects.create(name="lab", address="127.0.0.1", uuid="pool-lab", product_version="8.2.1")
    dmz = Pool.objects.create(name="dmz", address="127.0.0.2", uuid="pool-dmz", product_version="8.2.1")

    def vm(pool, name, tags=(), power="Running", **fields):
        return VM.objects.create(pool=pool, uuid=f"{name}-uuid", ref=f"OpaqueRef:{name}", name=name,
                                 power_state=power, tags=list(tags), tags_index=VM.index_tags(list(tags)), **fields)
    return {
        "lab": lab, "dmz": dmz,
        "web1": vm(lab, "web-01", ["nightly"]), "web2": vm(dmz, "web-02", ["nightly"], power="Halted"),
        "db": vm(lab, "db-01", ["nightly", "sql"]), "mail": vm(lab, "mail"),
        "gone": vm(lab, "web-gone", ["nightly"], removed_at=timezone.now()),
    }


@pytest.fixture
def data_store(tmp_path, db):
    return create_store(name="nas", path=str(tmp_path / "store"), passphrase=PASSPHRASE)


@pytest.fixture
def job(data_store):
    return BackupJob.objects.create(name="nightly", store=data_store, rule_tags=["nightly"])


def job_post(store, **overrides):
    data = {"name": "nightly-web", "description": "", "enabled": "on", "selection": "rule", "rule_tags": "nightly",
            "rule_name_pattern": "web-*", "method": "normal", "quiesce_fallback": "normal",
            "restart_after_snapshot": "on", "shutdown_timeout": "600", "transfer_compression": "zstd",
            "incremental": "on", "full_every": "6", "full_on_weekdays": ["6"], "store": str(store.pk),
            "max_parallel_vms": "2", "window_minutes": "", "rpo_hours": "", "keep_last": "7", "keep_hourly": "0",
            "keep_daily": "7", "keep_weekly": "4", "keep_monthly": "0", "keep_yearly": "0",
            "deleted_vm_keep_days": "90"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def a_point(store, vm, taken_at, job=None, **fields):
    return RestorePoint.objects.create(store=store, point_id=f"{vm.uuid}/{taken_at:%Y%m%dT%H%M%S}", vm_uuid=vm.uuid,
                                       vm_name=vm.name, taken_at=taken_at, method=BackupMethod.NORMAL,
                                       kind=BackupKind.FULL, job=job, **fields)


def q_rows():
    """The django-q2 Schedule rows of job schedules (the watchdog has a row of its own)."""
    return Schedule.objects.filter(func=RUN_JOB_TASK)


def events(action=None, **filters):
    qs = AuditEvent.objects.filter(**filters)
    return qs.filter(action=action) if action else qs


# --- who may do what ----------------------------------------------------------------------

def test_every_role_reads_the_job_pages(admin_client, operator_client, auditor_client, job):
    for client in (admin_client, operator_client, auditor_client):
        for url in (reverse("backups:job_list"), job.get_absolute_url(),
                    reverse("backups:job_retention", args=[job.pk])):
            assert client.get(url).status_code == 200, url


def test_only_an_administrator_opens_the_job_and_schedule_forms(admin_client, operator_client, auditor_client, job):
    urls = [reverse("backups:job_add"), reverse("backups:job_edit", args=[job.pk]),
            reverse("backups:job_schedule_add", args=[job.pk])]
    for url in urls:
        assert admin_client.get(url).status_code == 200
        assert operator_client.get(url).status_code == 403
        assert auditor_client.get(url).status_code == 403


def test_anonymous_visitors_are_sent_to_sign_in(client, job):
    response = client.get(reverse("backups:job_list"))
    assert response.status_code == 302 and "/sign-in/" in response["Location"]


def test_an_operator_can_run_a_job_but_not_change_delete_or_disable_it(operator_client, job, data_store):
    assert operator_client.post(reverse("backups:job_edit", args=[job.pk]), job_post(data_store)).status_code == 403
    assert operator_client.post(reverse("backups:job_delete", args=[job.pk])).status_code == 403
    assert operator_client.post(reverse("backups:job_enable", args=[job.pk]), {"enabled": "0"}).status_code == 403
    save_retention = reverse("backups:job_retention_save", args=[job.pk])
    assert operator_client.post(save_retention, {"keep_last": "1"}).status_code == 403
    assert operator_client.post(reverse("backups:job_run", args=[job.pk])).status_code == 302
    job.refresh_from_db()
    assert job.enabled


def test_an_auditor_can_neither_run_retry_cancel_nor_protect(auditor_client, job, inventory, data_store):
    run = BackupRun.objects.create(job=job, status=RunStatus.FAILED)
    vb = VmBackup.objects.create(run=run, vm=inventory["web1"], vm_uuid="x", vm_name="web-01", store=data_store,
                                 method="normal", status=RunStatus.QUEUED)
    point = a_point(data_store, inventory["web1"], timezone.now())
    assert auditor_client.post(reverse("backups:job_run", args=[job.pk])).status_code == 403
    assert auditor_client.post(reverse("backups:run_retry", args=[run.pk])).status_code == 403
    assert auditor_client.post(reverse("backups:vm_backup_cancel", args=[vb.pk])).status_code == 403
    assert auditor_client.post(reverse("backups:point_protect", args=[point.pk, "protect"])).status_code == 403
    assert not OrmQ.objects.exists()
    point.refresh_from_db()
    assert not point.protected


def test_the_navigation_has_jobs(auditor_client, job):
    response = auditor_client.get(reverse("backups:job_list"))
    jobs = [item for item in response.context["nav_sections"] if item["label"] == "Jobs"]
    assert jobs and jobs[0]["url"] == reverse("backups:job_list") and jobs[0]["active"]


def test_the_job_list_says_what_when_and_how_the_last_run_went(admin_client, auditor_client, job, data_store):
    admin_client.post(reverse("backups:job_schedule_add", args=[job.pk]),
                      {"mode": "daily", "at": "23:15", "timezone": "America/New_York", "kind": "auto", "enabled": "on"})
    BackupRun.objects.create(job=job, status=RunStatus.SUCCESS, created_at=timezone.now() - timedelta(days=2))
    last = BackupRun.objects.create(job=job, status=RunStatus.FAILED, created_at=timezone.now() - timedelta(hours=1))
    BackupJob.objects.create(name="manual", store=data_store, selection="explicit", enabled=False)

    response = auditor_client.get(reverse("backups:job_list"))
    listed = {job.name: job for job in response.context["jobs"]}
    nightly = listed["nightly"]
    assert nightly.schedule_words == ["At 23:15 (America/New_York)"]
    assert nightly.next_run.endswith("23:15 EST") or nightly.next_run.endswith("23:15 EDT")
    assert nightly.last_run == last and nightly.rpo_words == "25 hours"
    assert listed["manual"].last_run is None and listed["manual"].next_run == ""
    page = response.content.decode()
    assert "VMs tagged nightly, in every pool" in page and f'href="{last.get_absolute_url()}"' in page
    assert "Run now only" in page and "never run" in page


# --- the job form -------------------------------------------------------------------------

def test_creating_a_job_saves_every_field_and_is_audited(admin_client, data_store, inventory):
    from xenpools.models import VDI, VirtualDisk

    swap = VDI.objects.create(pool=inventory["lab"], uuid="7d1e0c53-0000-4000-8000-00000000swap"[:36], ref="OpaqueRef:swap",
                              name="swap", virtual_size=4 << 30)
    VirtualDisk.objects.create(pool=inventory["lab"], uuid="vbd-swap", ref="OpaqueRef:vbd-swap", vm=inventory["web1"],
                               vdi=swap, userdevice="1")
    assert "web-01: swap (position 1, 4.3 GB)" in admin_client.get(reverse("backups:job_add")).content.decode()
    data = job_post(data_store, rule_pools=[str(inventory["lab"].pk)], rule_power_states=["Running"],
                    excluded_vms=[str(inventory["db"].pk)], window_minutes="120", rpo_hours="30",
                    excluded_disks=[swap.uuid])
    response = admin_client.post(reverse("backups:job_add"), data)

    job = BackupJob.objects.get(name="nightly-web")
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert (job.rule_tags, job.rule_name_pattern, job.rule_power_states) == (["nightly"], "web-*", ["Running"])
    assert list(job.rule_pools.all()) == [inventory["lab"]] and list(job.excluded_vms.all()) == [inventory["db"]]
    assert job.excluded_disks == [swap.uuid]
    assert (job.transfer_compression, job.full_every, job.full_on_weekdays) == ("zstd", 6, [6])
    assert (job.window_minutes, job.rpo_hours, job.keep_daily, job.keep_weekly) == (120, 30, 7, 4)
    event = events("create", target_id=str(job.pk), target_type="backups.backupjob").get()
    assert event.actor_username == "alice-admin" and event.after["rule_name_pattern"] == "web-*"


def test_editing_disabling_and_deleting_a_job_are_audited(admin_client, job, data_store):
    schedule = JobSchedule.objects.create(job=job, cron="0 22 * * *")
    admin_client.post(reverse("backups:job_schedule_edit", args=[job.pk, schedule.pk]),
                      {"mode": "daily", "at": "22:00", "timezone": "UTC", "kind": "auto", "enabled": "on"})
    assert q_rows().count() == 1

    admin_client.post(reverse("backups:job_edit", args=[job.pk]), job_post(data_store, name="nightly", keep_last="3"))
    job.refresh_from_db()
    assert job.keep_last == 3
    edit = events("update", target_type="backups.backupjob", message__endswith="changed").latest("sequence")
    assert (edit.before["keep_last"], edit.after["keep_last"], edit.actor_username) == (7, 3, "alice-admin")

    admin_client.post(reverse("backups:job_enable", args=[job.pk]), {"enabled": "0"})
    job.refresh_from_db()
    assert not job.enabled and q_rows().count() == 0          # a disabled job's schedule does not fire
    toggle = events("update", target_type="backups.backupjob").latest("sequence")
    assert (toggle.before["enabled"], toggle.after["enabled"]) == (True, False)
    admin_client.post(reverse("backups:job_enable", args=[job.pk]), {"enabled": "1"})
    toggle = events("update", target_type="backups.backupjob").latest("sequence")
    assert q_rows().count() == 1 and (toggle.before["enabled"], toggle.after["enabled"]) == (False, True)

    admin_client.post(reverse("backups:job_delete", args=[job.pk]))
    assert not BackupJob.objects.exists() and q_rows().count() == 0
    assert events("delete", target_type="backups.backupjob").exists()


@pytest.mark.parametrize("overrides, field, words", [
    ({"rule_name_pattern": "web-[0-9]"}, "rule_name_pattern", "not supported"),
    ({"selection": "explicit"}, "vms", "Choose at least one VM"),
    ({"max_parallel_vms": "0"}, "max_parallel_vms", "At least one"),
    ({"name": "NIGHTLY"}, "name", "exists already"),
])
def test_the_job_form_refuses_bad_values_on_their_field(admin_client, job, data_store, overrides, field, words):
    response = admin_client.post(reverse("backups:job_add"), job_post(data_store, **overrides))
    assert response.status_code == 400
    assert words in " ".join(response.context["form"].errors[field])
    assert BackupJob.objects.count() == 1


# --- selection preview ----------------------------------------------------------------------

def test_the_selection_preview_lists_what_an_unsaved_rule_picks_now(auditor_client, inventory):
    url = reverse("backups:job_selection_preview")
    response = auditor_client.get(url, {"selection": "rule", "rule_tags": "nightly"})
    assert [vm["name"] for vm in response.json()["vms"]] == ["db-01", "web-01", "web-02"]   # not the deleted one

    response = auditor_client.get(url, {"selection": "rule", "rule_tags": "nightly", "rule_name_pattern": "web-*",
                                        "rule_power_states": "Running", "rule_pools": inventory["lab"].pk})
    assert [vm["name"] for vm in response.json()["vms"]] == ["web-01"]

    response = auditor_client.get(url, {"selection": "rule", "excluded_vms": inventory["mail"].pk})
    assert response.json()["count"] == 3

    response = auditor_client.get(url, {"selection": "explicit", "vms": [inventory["mail"].pk, inventory["db"].pk]})
    assert [vm["name"] for vm in response.json()["vms"]] == ["db-01", "mail"]

    response = auditor_client.get(url, {"rule_name_pattern": "web-{1,2}"})
    assert response.status_code == 400 and "rule_name_pattern" in response.json()["errors"]


def test_the_job_page_lists_the_selected_vms_with_their_next_backup_kind(auditor_client, job, inventory, data_store):
    a_point(data_store, inventory["web1"], timezone.now() - timedelta(days=1), job=job, chain={"disks": ["x"]})
    response = auditor_client.get(job.get_absolute_url())
    predictions = {row.vm.name: row.reason for row in response.context["predictions"]}
    assert set(predictions) == {"db-01", "web-01", "web-02"}
    assert predictions["web-01"].startswith("incremental")
    assert predictions["db-01"] == "full: no earlier restore point on this data store"
    assert b"no earlier restore point" in response.content


def test_the_job_page_says_which_vms_the_pre_flight_checks_would_skip(auditor_client, job, inventory, data_store):
    from xenpools.models import StorageRepository, VDI, VirtualDisk

    sr = StorageRepository.objects.create(pool=inventory["lab"], uuid="sr-full", ref="OpaqueRef:sr", name="Local storage",
                                          type="lvm", physical_size=10 << 30, physical_utilisation=(10 << 30) - (1 << 30))
    vdi = VDI.objects.create(pool=inventory["lab"], uuid="vdi-big", ref="OpaqueRef:vdi", sr=sr, virtual_size=20 << 30,
                             physical_utilisation=20 << 30)
    VirtualDisk.objects.create(pool=inventory["lab"], uuid="vbd-big", ref="OpaqueRef:vbd", vm=inventory["web1"],
                               vdi=vdi, userdevice="0")

    response = auditor_client.get(job.get_absolute_url())

    rows = {row.vm.name: row for row in response.context["predictions"]}
    assert rows["web-01"].problems == [
        "storage repository Local storage has 1.07 GB free; the snapshot needs about 21.54 GB "
        "(thick LVM: up to the full disk size)"]
    assert rows["db-01"].problems == []
    assert b"Would be skipped" in response.content


# --- schedules ---------------------------------------------------------------------------------

def test_adding_a_schedule_creates_its_django_q_row_and_is_audited(admin_client, job):
    response = admin_client.post(reverse("backups:job_schedule_add", args=[job.pk]),
                                 {"mode": "weekly", "at": "01:30", "weekdays": ["0", "4"], "timezone": "Europe/Berlin",
                                  "kind": "full", "enabled": "on"})
    assert response.status_code == 302
    schedule = job.schedules.get()
    assert (schedule.cron, schedule.timezone, schedule.kind) == ("30 1 * * 1,5", "Europe/Berlin", "full")
    q = q_rows().get()
    assert q.func == "backups.jobs.tasks.run_job" and schedule.q_schedule == q and q.cron == "30 1 * * 1,5"
    # in Berlin's zone, not the console's (django-q2 computes a new row's next run in UTC)
    assert q.next_run == next_times("30 1 * * 1,5", "Europe/Berlin", 1)[0]
    assert events("create", target_id=str(job.pk), message__contains="schedule #").exists()

    page = admin_client.get(job.get_absolute_url())
    row = page.context["schedule_rows"][0]
    assert len(row["next"]) == 5
    assert all(t.weekday() in (0, 4) and (t.hour, t.minute) == (1, 30) for t, _words in row["next"])
    assert all(words.endswith("01:30 CET") or words.endswith("01:30 CEST") for _t, words in row["next"])
    assert b"At 01:30, only on Monday and Friday" in page.content

    admin_client.post(reverse("backups:job_schedule_delete", args=[job.pk, schedule.pk]))
    assert not JobSchedule.objects.exists() and not q_rows().exists()
    assert events("delete", target_id=str(job.pk), message__contains="removed").exists()


@pytest.mark.parametrize("data, cron", [
    ({"mode": "daily", "at": "22:05"}, "5 22 * * *"),
    ({"mode": "hours", "hours": "6", "minute": "15"}, "15 */6 * * *"),
    ({"mode": "cron", "cron": " 0  3 * * 1-5 "}, "0 3 * * 1-5"),
])
def test_each_simple_schedule_form_produces_its_cron(admin_client, job, data, cron):
    admin_client.post(reverse("backups:job_schedule_add", args=[job.pk]),
                      {"timezone": "UTC", "kind": "auto", "enabled": "on", **data})
    assert job.schedules.get().cron == cron


@pytest.mark.parametrize("data, field, words", [
    ({"mode": "cron", "cron": "61 * * * *"}, "cron", "not a valid cron expression"),
    ({"mode": "cron", "cron": "0 22 * *"}, "cron", "five fields"),
    ({"mode": "daily", "at": "22:00", "timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
    ({"mode": "weekly", "at": "22:00"}, "weekdays", "at least one weekday"),
    ({"mode": "hours", "hours": "30"}, "hours", "less than or equal to 23"),
    ({"mode": "daily", "at": ""}, "at", "HH:MM"),
])
def test_the_schedule_form_shows_bad_values_on_their_field(admin_client, job, data, field, words):
    response = admin_client.post(reverse("backups:job_schedule_add", args=[job.pk]),
                                 {"timezone": "UTC", "kind": "auto", "enabled": "on", **data})
    assert response.status_code == 400
    assert words in " ".join(response.context["form"].errors[field])
    assert not JobSchedule.objects.exists() and not q_rows().exists()


def test_the_schedule_preview_says_when_it_runs(auditor_client):
    url = reverse("backups:job_schedule_preview")
    body = auditor_client.get(url, {"mode": "daily", "at": "02:00", "timezone": "Asia/Tokyo", "kind": "auto"}).json()
    assert body["cron"] == "0 2 * * *" and body["description"] == "At 02:00"
    assert len(body["next"]) == 5 and all("02:00 JST" in when for when in body["next"])

    bad = auditor_client.get(url, {"mode": "cron", "cron": "every night", "timezone": "UTC", "kind": "auto"})
    assert bad.status_code == 400 and "cron" in bad.json()["errors"]


def test_editing_a_schedule_shows_the_simple_form_it_came_from(admin_client, job):
    schedule = JobSchedule.objects.create(job=job, cron="30 1 * * 1,5", timezone="Europe/Berlin")
    form = admin_client.get(reverse("backups:job_schedule_edit", args=[job.pk, schedule.pk])).context["form"]
    shown = (form["mode"].value(), form["weekdays"].value(), form["timezone"].value())
    assert shown == ("weekly", [0, 4], "Europe/Berlin")


def test_the_job_page_says_when_runs_were_missed_and_when_it_caught_up(auditor_client, job):
    missed_at = timezone.now() - timedelta(days=3)
    schedule = JobSchedule.objects.create(job=job, cron="0 22 * * *", last_missed_at=missed_at, last_missed_count=3)
    caught = BackupRun.objects.create(job=job, schedule=schedule, trigger=Trigger.SCHEDULE, status=RunStatus.SUCCESS,
                                      created_at=timezone.now() - timedelta(hours=2))
    page = auditor_client.get(job.get_absolute_url()).content.decode()
    assert f"3 runs missed since {timezone.localtime(missed_at):%Y-%m-%d %H:%M}" in page
    assert f'caught up once at <a href="{caught.get_absolute_url()}">' in page


# --- run now, runs --------------------------------------------------------------------------------

def test_run_now_queues_the_job_and_is_audited(operator_client, job):
    earlier = BackupRun.objects.create(job=job, status=RunStatus.SUCCESS)
    response = operator_client.post(reverse("backups:job_run", args=[job.pk]))
    assert response.status_code == 302 and f"following={earlier.pk}#" in response["Location"]
    page = operator_client.get(response["Location"])
    assert page.context["following"] and f'data-known-run="{earlier.pk}"' in page.content.decode()
    task = OrmQ.objects.get().task
    assert task["func"] == "backups.jobs.tasks.run_job" and task["args"] == (job.pk,)
    assert task["kwargs"]["trigger"] == Trigger.MANUAL
    assert events("job_start", target_type="backups.backupjob", actor_username="oscar-operator").exists()


def test_the_latest_run_endpoint_gives_each_vms_progress(auditor_client, job, inventory, data_store):
    old = BackupRun.objects.create(job=job, status=RunStatus.SUCCESS)
    run = BackupRun.objects.create(job=job, status=RunStatus.RUNNING)
    VmBackup.objects.create(run=run, vm=inventory["web1"], vm_uuid="a", vm_name="web-01", store=data_store,
                            method="normal", status=RunStatus.RUNNING, total_bytes=100, bytes_processed=40,
                            kind_reason="full: no earlier restore point on this data store")
    url = reverse("backups:job_latest_run", args=[job.pk])
    body = auditor_client.get(url, {"after": old.pk}).json()["run"]
    assert body["id"] == run.pk and not body["finished"]
    assert [(v["vm_name"], v["progress"]) for v in body["vm_backups"]] == [("web-01", 0.4)]
    assert auditor_client.get(url, {"after": run.pk}).json()["run"] is None


def test_the_run_list_filters_by_job_and_shows_it(auditor_client, job, data_store):
    other = BackupJob.objects.create(name="weekly", store=data_store)
    mine = BackupRun.objects.create(job=job)
    BackupRun.objects.create(job=other)
    BackupRun.objects.create()
    response = auditor_client.get(reverse("backups:index"), {"job": job.pk})
    assert [run.pk for run in response.context["runs"]] == [mine.pk]
    assert f'<a href="{job.get_absolute_url()}">nightly</a>' in response.content.decode()


def test_retry_starts_a_run_of_the_failed_vms_only(operator_client, auditor_client, job, inventory, data_store):
    run = BackupRun.objects.create(job=job, status=RunStatus.FAILED, finished_at=timezone.now())
    for vm, status, error in [(inventory["web1"], RunStatus.SUCCESS, ""), (inventory["db"], RunStatus.FAILED, "boom"),
                              (inventory["web2"], RunStatus.SKIPPED, "skipped: the run window closed at 23:00")]:
        VmBackup.objects.create(run=run, vm=vm, pool=vm.pool, vm_uuid=vm.uuid, vm_name=vm.name, store=data_store,
                                method="normal", status=status, error=error)
    page = auditor_client.get(run.get_absolute_url()).content.decode()
    assert "the run window closed at 23:00" in page and "Retry failed VMs" not in page
    page = operator_client.get(run.get_absolute_url()).content.decode()
    assert "Retry failed VMs" in page and f"nightly</a>" in page

    response = operator_client.post(reverse("backups:run_retry", args=[run.pk]))
    retry = BackupRun.objects.exclude(pk=run.pk).get()
    assert response["Location"] == retry.get_absolute_url()
    assert sorted(retry.vm_backups.values_list("vm_name", flat=True)) == ["db-01", "web-02"]
    assert events("job_start", message__contains=f"failed VM(s) of run #{run.pk}").exists()


def test_retrying_a_run_without_failures_says_why_not(operator_client, job, inventory, data_store):
    run = BackupRun.objects.create(job=job, status=RunStatus.SUCCESS, finished_at=timezone.now())
    response = operator_client.post(reverse("backups:run_retry", args=[run.pk]), follow=True)
    assert "no VM of this run failed" in response.content.decode()
    assert BackupRun.objects.count() == 1


def test_cancelling_one_queued_vm_leaves_the_others(operator_client, job, inventory, data_store, monkeypatch):
    from backups.devices import routing

    monkeypatch.setattr(routing, "async_task", lambda *args, **kwargs: None)
    run = BackupRun.objects.create(job=job, status=RunStatus.RUNNING)
    first, second = (VmBackup.objects.create(run=run, vm=vm, pool=vm.pool, vm_uuid=vm.uuid, vm_name=vm.name,
                                             store=data_store, method="normal")
                     for vm in (inventory["web1"], inventory["db"]))
    page = operator_client.get(run.get_absolute_url()).content.decode()
    assert page.count("data-vm-cancel-form") == 2

    operator_client.post(reverse("backups:vm_backup_cancel", args=[first.pk]))
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (RunStatus.CANCELLED, RunStatus.QUEUED)
    assert events("job_cancel", target_type="backups.vmbackup", target_id=str(first.pk)).exists()


# --- retention preview -------------------------------------------------------------------------

@pytest.fixture
def daily_points(job, inventory, data_store):
    now = timezone.now().replace(hour=22, minute=0, second=0, microsecond=0)
    points = []
    for vm in (inventory["web1"], inventory["db"]):
        points += [a_point(data_store, vm, now - timedelta(days=d), job=job) for d in range(1, 21)]
    return points


def test_the_retention_preview_shows_what_the_jobs_policy_keeps(auditor_client, job, daily_points):
    response = auditor_client.get(reverse("backups:job_retention", args=[job.pk]))
    plan = preview(job)
    shown = {p["point"].point_id: p["kept"] for row in response.context["rows"] for p in row["points"]}
    assert {pid for pid, kept in shown.items() if not kept} == set(plan.remove)
    assert {pid for pid, kept in shown.items() if kept} == set(plan.keep)
    assert (response.context["kept"], response.context["removed"]) == (14, 26)     # keep_last 7, two VMs
    assert b"data-retention-timeline" in response.content and b"keep last" in response.content.lower()


def test_a_proposed_policy_is_previewed_and_saved_by_an_administrator(admin_client, job, daily_points):
    proposal = {"keep_last": "2", "keep_hourly": "0", "keep_daily": "0", "keep_weekly": "2", "keep_monthly": "0",
                "keep_yearly": "0", "deleted_vm_keep_days": "30"}
    response = admin_client.get(reverse("backups:job_retention", args=[job.pk]), proposal)
    assert response.context["proposed"]
    expected = preview(job, response.context["form"].retention())
    assert response.context["removed"] == len(expected.remove) and response.context["kept"] == len(expected.keep)
    assert b"Save this policy" in response.content
    job.refresh_from_db()
    assert job.keep_last == 7                     # previewing changes nothing

    admin_client.post(reverse("backups:job_retention_save", args=[job.pk]), proposal)
    job.refresh_from_db()
    assert (job.keep_last, job.keep_weekly, job.deleted_vm_keep_days) == (2, 2, 30)
    assert events("update", target_type="backups.backupjob").latest("sequence").before["keep_last"] == 7


def test_a_protected_point_is_kept_by_the_preview(auditor_client, job, daily_points):
    oldest = min(daily_points, key=lambda p: p.taken_at)
    RestorePoint.objects.filter(pk=oldest.pk).update(protected=True)
    response = auditor_client.get(reverse("backups:job_retention", args=[job.pk]))
    item = next(p for row in response.context["rows"] for p in row["points"] if p["point"].pk == oldest.pk)
    assert item["kept"] and "protected" in item["reasons"]


# --- protecting restore points ------------------------------------------------------------------

def test_protecting_and_unprotecting_a_point_is_audited(operator_client, data_store, inventory):
    point = a_point(data_store, inventory["web1"], timezone.now())
    page = operator_client.get(reverse("backups:point_list")).content.decode()
    protect_url = reverse("backups:point_protect", args=[point.pk, "protect"])
    assert f'href="{protect_url}?next=' in page
    form = operator_client.get(protect_url, {"next": "/backups/restore-points/?q=web"})
    assert form.status_code == 200 and 'value="/backups/restore-points/?q=web"' in form.content.decode()

    response = operator_client.post(reverse("backups:point_protect", args=[point.pk, "protect"]),
                                    {"note": "legal hold", "next": reverse("backups:point_list") + "?q=web"})
    assert response["Location"] == reverse("backups:point_list") + "?q=web"
    point.refresh_from_db()
    assert point.protected and point.protected_note == "legal hold"
    page = operator_client.get(reverse("backups:point_list")).content.decode()
    assert "Protected" in page and "legal hold" in page and "Unprotect" in page
    assert events("update", target_type="backups.restorepoint", message__contains="protected: legal hold").exists()

    operator_client.post(reverse("backups:point_protect", args=[point.pk, "unprotect"]), {"next": "https://evil.test/"})
    point.refresh_from_db()
    assert not point.protected and point.protected_note == ""
    assert events("update", target_type="backups.restorepoint", message__contains="unprotected").exists()
    assert operator_client.post(reverse("backups:point_protect", args=[point.pk, "delete"])).status_code == 404


def test_the_vm_page_offers_protect_to_operators_only(operator_client, auditor_client, data_store, inventory):
    point = a_point(data_store, inventory["web1"], timezone.now())
    protect_url = reverse("backups:point_protect", args=[point.pk, "protect"])
    assert protect_url in operator_client.get(inventory["web1"].get_absolute_url()).content.decode()
    assert protect_url not in auditor_client.get(inventory["web1"].get_absolute_url()).content.decode()
    assert auditor_client.get(protect_url).status_code == 403


def test_the_job_page_shows_actions_by_role(admin_client, operator_client, auditor_client, job):
    run_now, edit = reverse("backups:job_run", args=[job.pk]), reverse("backups:job_edit", args=[job.pk])
    admin_page = admin_client.get(job.get_absolute_url()).content.decode()
    operator_page = operator_client.get(job.get_absolute_url()).content.decode()
    auditor_page = auditor_client.get(job.get_absolute_url()).content.decode()
    assert run_now in admin_page and edit in admin_page
    assert run_now in operator_page and edit not in operator_page
    assert run_now not in auditor_page and edit not in auditor_page


def test_cancelling_a_running_vm_asks_it_to_stop_at_its_next_step(operator_client, job, inventory, data_store):
    run = BackupRun.objects.create(job=job, status=RunStatus.RUNNING)
    running = VmBackup.objects.create(run=run, vm=inventory["web1"], vm_uuid="a", vm_name="web-01", store=data_store,
                                      method="normal", status=RunStatus.RUNNING, dispatched_at=timezone.now())
    operator_client.post(reverse("backups:vm_backup_cancel", args=[running.pk]))
    running.refresh_from_db()
    assert running.status == RunStatus.RUNNING and running.cancel_requested
