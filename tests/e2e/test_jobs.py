"""Backup jobs in a real browser: an administrator creates a job with a tag rule (the page
previews the VMs it picks), adds a daily schedule (the form shows the next run times), runs
the job now and watches each VM's progress reach 100 % on the job page without reloading,
then opens the run, previews and saves a retention policy and protects a restore point.

The worker is a thread taking tasks from django-q2's ORM broker as a cluster would (see
tests/e2e/test_backups.py): first the job's run_job task, then the VM backups it dispatches.
"""
import threading
import time

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import OrmQ

from backups.choices import RunStatus
from backups.jobs.retention import JobRetention, preview
from backups.jobs.schedules import RUN_JOB_TASK
from backups.models import BackupJob, BackupRun, RestorePoint
from backups.repository import RetentionPolicy
from backups.stores import create_store
from sesamweb.accounts.roles import Role
from tests.fixtures.users import make_user
from xenpools.connection import PoolConnection
from xenpools.models import VM
from xenpools.registration import register_pool

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PASSPHRASE = "correct horse battery staple"


class BrokerWorker:
    """Runs queued tasks (also those queued by earlier tasks) until the job's run finished."""

    def __init__(self):
        self.errors = []
        self.thread = None

    def start(self, deadline_seconds=120):
        def work():
            deadline = time.monotonic() + deadline_seconds
            try:
                while time.monotonic() < deadline:
                    queued = OrmQ.objects.order_by("id").first()
                    if queued is None:
                        run = BackupRun.objects.filter(job__isnull=False).first()
                        if run is not None and run.is_finished:
                            return
                        time.sleep(0.1)
                        continue
                    task = queued.task
                    OrmQ.objects.filter(pk=queued.pk).delete()   # acknowledged, as the cluster does
                    import_string(task["func"])(*task["args"], **task["kwargs"])
                self.errors.append(TimeoutError("the job's run did not finish in time"))
            except Exception as exc:  # reported by the test, not lost in the thread
                self.errors.append(exc)
            finally:
                connection.close()
        self.thread = threading.Thread(target=work, name="test-broker-worker", daemon=True)
        self.thread.start()

    def join(self):
        self.thread.join(timeout=150)
        assert not self.errors, self.errors


@pytest.fixture
def lab(asgi_server, sim, tmp_path):
    make_user("alice-admin", Role.ADMINISTRATOR, first_name="Alice", last_name="Admin")
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)
    pool = register_pool("Lab pool", sim.url, "root", sim.password, probe, sync=True)
    store = create_store(name="nas-01", path=str(tmp_path / "nas-01"), passphrase=PASSPHRASE)
    tagged = VM.objects.get(pool=pool, name="test-vm-1", is_snapshot=False)
    VM.objects.filter(pk=tagged.pk).update(tags=["nightly"], tags_index=VM.index_tags(["nightly"]))
    return pool, store, tagged


def test_an_administrator_creates_a_job_with_a_tag_rule_and_schedule_and_runs_it(asgi_server, lab, page, screenshot):
    pool, store, tagged = lab
    page.set_viewport_size({"width": 1400, "height": 1000})
    asgi_server.sign_in(page, "alice-admin")
    page.goto(asgi_server.url + "/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    page.get_by_text("No backup jobs yet").wait_for()
    page.get_by_role("link", name="New job").click()

    page.get_by_label("Name", exact=True).fill("nightly-tagged")
    page.get_by_label("VMs matching a rule (evaluated at each run)").check()
    page.get_by_label("Tags").fill("nightly")
    picks = page.locator("[data-selection-preview]")
    picks.get_by_text("1 VM matches now.").wait_for()
    assert picks.locator("[data-preview-list] li").all_inner_texts() == [f"test-vm-1 {pool.name} · Running"]
    page.get_by_label("Data store").select_option(label="nas-01")
    page.get_by_label("Keep last").fill("5")
    screenshot(page, "jobs-form")
    page.get_by_role("button", name="Create job").click()

    job = BackupJob.objects.get(name="nightly-tagged")
    page.wait_for_url(f"**/backups/jobs/{job.pk}/")
    assert job.rule_tags == ["nightly"] and job.keep_last == 5 and job.store == store
    page.get_by_role("link", name="Add schedule").click()
    page.get_by_label("Daily at").check()
    page.get_by_label("At (HH:MM)").fill("22:30")
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    next_times = page.locator("[data-schedule-next] li")
    page.locator("[data-schedule-description]", has_text="At 22:30 (Europe/Berlin)").wait_for()
    next_times.nth(4).wait_for()
    assert all("22:30 CE" in text for text in next_times.all_inner_texts())      # CET or CEST
    screenshot(page, "jobs-schedule-form")
    page.get_by_role("button", name="Save schedule").click()

    page.wait_for_url(f"**/backups/jobs/{job.pk}/")
    schedule = job.schedules.get()
    assert (schedule.cron, schedule.timezone) == ("30 22 * * *", "Europe/Berlin")
    assert schedule.q_schedule is not None and schedule.q_schedule.func == RUN_JOB_TASK
    assert page.locator("[data-next-times] li").count() == 5
    page.locator("[data-prediction-table]").get_by_text("full: no earlier restore point on this data store").wait_for()
    screenshot(page, "jobs-detail-before-run")

    page.get_by_role("button", name="Run now").click()
    page.wait_for_url(f"**/backups/jobs/{job.pk}/?following=0*")
    page.wait_for_selector('[data-live-state="live"]')
    page.evaluate("window.__notReloaded = true")
    current = page.locator("[data-job-live]")
    assert current.is_visible()
    worker = BrokerWorker()
    worker.start()
    bar = current.locator('[role=progressbar][aria-label="Progress of test-vm-1"]')
    bar.wait_for(timeout=60_000)
    current.locator('[aria-valuenow="100"]').wait_for(timeout=90_000)
    current.locator("[data-run-badge]", has_text="Succeeded").wait_for(timeout=60_000)
    worker.join()
    assert page.evaluate("window.__notReloaded") is True
    run = BackupRun.objects.get(job=job)
    assert run.status == RunStatus.SUCCESS and run.vm_backups.get().vm_name == "test-vm-1"
    page.wait_for_function("(el) => el.offsetWidth >= el.parentElement.offsetWidth - 1",
                           arg=bar.locator(".progress-bar").element_handle())   # the bar's width transition
    screenshot(page, "jobs-detail-run-finished")

    page.locator("[data-run-link]").click()
    page.wait_for_url(f"**/backups/runs/{run.pk}/")
    page.get_by_role("link", name="nightly-tagged").first.wait_for()
    page.get_by_text("Full: no earlier restore point on this data store").wait_for()
    screenshot(page, "jobs-run-detail")

    # The VM list: the VM the job just backed up meets its RPO (one day from the daily schedule).
    page.goto(asgi_server.url + "/pools/vms/?q=test-vm-1")
    row = page.locator('tr:has-text("test-vm-1")').first
    assert "RPO met" in row.locator('[data-field="protection"]').inner_text()
    screenshot(page, "jobs-vm-list-rpo-met")

    page.goto(asgi_server.url + "/backups/history/")
    assert "nightly-tagged" in page.locator("[data-history-table]").inner_text()
    screenshot(page, "history")

    # Two months of nightly points of two more VMs (catalog rows) to preview a policy on.
    now = timezone.now().replace(hour=22, minute=30, second=0, microsecond=0)
    for name in ("test-vm-2", "test-vm-3"):
        vm = VM.objects.get(pool=pool, name=name, is_snapshot=False)
        RestorePoint.objects.bulk_create(
            RestorePoint(store=store, job=job, point_id=f"{vm.uuid}/{day}", vm_uuid=vm.uuid, vm_name=vm.name,
                         taken_at=now - timedelta(days=day), method="normal", kind="full") for day in range(1, 61))
    page.goto(asgi_server.url + f"/backups/jobs/{job.pk}/")
    page.get_by_role("link", name="Retention preview").click()
    page.locator("[data-retention-timeline] circle").first.wait_for()
    assert page.locator("[data-removed-count]").inner_text() == str(2 * (60 - 5))
    page.get_by_label("Keep last").fill("3")
    page.get_by_label("Weekly").fill("4")
    page.get_by_role("button", name="Preview this policy").click()
    page.get_by_role("heading", name="The proposed policy keeps").wait_for()
    expected = preview(job, JobRetention(RetentionPolicy(keep_last=3, keep_weekly=4), timedelta(days=90)))
    assert page.locator("[data-removed-count]").inner_text() == str(len(expected.remove))
    assert page.locator("circle.timeline-removed").count() == len(expected.remove)
    screenshot(page, "jobs-retention-preview")
    page.get_by_role("button", name="Save this policy").click()
    page.wait_for_url(f"**/backups/jobs/{job.pk}/")
    job.refresh_from_db()
    assert (job.keep_last, job.keep_weekly) == (3, 4)

    page.goto(asgi_server.url + "/backups/restore-points/?q=test-vm-1")
    row = page.locator("[data-point-table] tbody tr").first
    row.get_by_role("link", name="Protect the restore point of test-vm-1").click()
    page.get_by_label("Why").fill("kept for the audit")
    screenshot(page, "jobs-point-protect-note")
    page.get_by_role("button", name="Protect", exact=True).click()
    page.wait_for_url("**/backups/restore-points/?q=test-vm-1")
    page.locator("[data-point-table]").get_by_text("kept for the audit").wait_for()
    assert RestorePoint.objects.get(vm_uuid=tagged.uuid).protected
    screenshot(page, "jobs-point-protected")
    page.goto(asgi_server.url + "/backups/jobs/")
    page.locator(f'tr[data-job-id="{job.pk}"]').get_by_text("Succeeded").wait_for()
    screenshot(page, "jobs-list")


def test_an_operator_retries_the_failed_vms_of_a_run_and_cancels_one(asgi_server, lab, page, screenshot):
    pool, store, _tagged = lab
    make_user("oscar-operator", Role.OPERATOR, first_name="Oscar", last_name="Operator")
    job = BackupJob.objects.create(name="nightly-lab", store=store, rule_name_pattern="test-vm-*")
    run = BackupRun.objects.create(job=job, status=RunStatus.FAILED, started_at=timezone.now() - timedelta(minutes=5),
                                   finished_at=timezone.now())
    outcomes = [("test-vm-1", RunStatus.SUCCESS, ""), ("test-vm-2", RunStatus.FAILED, "the pool did not answer"),
                ("test-vm-3", RunStatus.SKIPPED, "skipped: the run window closed at 06:00 before this VM's backup started")]
    for name, status, error in outcomes:
        vm = VM.objects.get(pool=pool, name=name, is_snapshot=False)
        run.vm_backups.create(vm=vm, pool=pool, vm_uuid=vm.uuid, vm_name=name, store=store, method="normal",
                              status=status, error=error, phase="done" if status == RunStatus.SUCCESS else "queued", kind_reason="full: no earlier restore point on this data store")
    asgi_server.sign_in(page, "oscar-operator")
    page.goto(asgi_server.url + run.get_absolute_url())
    page.get_by_text("skipped: the run window closed at 06:00").wait_for()
    screenshot(page, "jobs-run-with-failures")

    page.get_by_role("button", name="Retry failed VMs").click()
    retry = BackupRun.objects.exclude(pk=run.pk).get()
    page.wait_for_url(f"**/backups/runs/{retry.pk}/")
    assert sorted(retry.vm_backups.values_list("vm_name", flat=True)) == ["test-vm-2", "test-vm-3"]
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel the backup of test-vm-3").click()
    page.get_by_text("Backup of test-vm-3 cancelled").wait_for()
    assert retry.vm_backups.get(vm_name="test-vm-3").status == RunStatus.CANCELLED
    assert page.get_by_role("button", name="Cancel the backup of test-vm-2").is_visible()
    screenshot(page, "jobs-retry-run-one-cancelled")
