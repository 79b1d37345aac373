"""What backups tell the notifications (backups/notifications.py), end to end with real
backups on the simulator and real receivers: the failure email names pool, host, job,
store, VMs, transfer path and error; one failed VM of five is reported; a store that
cannot be opened is reported; a receiver that is down neither fails nor holds a backup."""
import email
import email.policy

import pytest
from django.test import override_settings

from backups.choices import BackupMethod, RunStatus, Trigger
from backups.engine.backup import finish_run_if_done
from backups.jobs.runs import start_job_run
from backups.maintenance import verify_points
from backups.models import BackupRun, VmBackup
from backups.services import request_backup, run_in_this_process
from sesamweb.notify.choices import DeliveryStatus
from sesamweb.notify.delivery import send_due
from sesamweb.notify.models import Channel, Delivery, Event, Rule
from sesamweb.notify.services import save_channel, save_rule
from tests.fixtures.receivers import SmtpReceiver, free_port, wait_for

from .jobs.conftest import make_job, run_queued_tasks  # noqa: F401 - fixtures
from .restore.conftest import plan_for  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def channel_to(kind, rule_events, **config):
    channel = save_channel(Channel(name=f"{kind}-ops", kind=kind, config=config), secret="k" * 20)
    save_rule(Rule(name="ops", event_names=list(rule_events)), channels=[channel])
    return channel


def mail_text(raw):
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return message["Subject"], {p.get_content_type(): p.get_content() for p in message.walk() if not p.is_multipart()}


@override_settings(SESAM_BASE_URL="https://backup.example.test")
def test_a_job_run_with_a_failed_vm_sends_an_email_naming_everything(make_job, vm_named, pool_reader,  # noqa: F811
                                                                     run_queued_tasks):  # noqa: F811
    kept, doomed = vm_named("test-vm-1"), vm_named("test-vm-2")
    job = make_job(name="nightly-lab", selection="explicit")
    job.vms.add(kept, doomed)
    pool_reader.xenapi.VM.destroy(pool_reader.vm(doomed.uuid))     # gone from the pool before the run
    with SmtpReceiver() as smtp:
        channel_to("email", ["run.failed"], host="127.0.0.1", port=smtp.port, security="none",
                   from_address="sesamweb@example.test", recipients=["ops@example.test"])
        run = start_job_run(job, trigger=Trigger.MANUAL)
        run_queued_tasks()
        run.refresh_from_db()
        assert run.status == RunStatus.FAILED
        send_due()
        (_, _, raw), = wait_for(lambda: smtp.messages, message="the failure email")
    subject, parts = mail_text(raw)
    assert subject == "[sesamweb] Backup nightly-lab: 1 of 2 VM(s) failed (pool lab)"
    host = kept.host.name if kept.host else None
    for body in (parts["text/plain"], parts["text/html"]):
        for expected in ("lab", "nightly-lab", "local", "test-vm-1", "test-vm-2", "full XVA export",
                         "the VM no longer exists in the pool", f"https://backup.example.test/backups/runs/{run.pk}/",
                         "full: no earlier restore point on this data store"):
            assert expected in body, (expected, body)
        if host:
            assert host in body
    event = Event.objects.get(name="run.failed")
    assert {"job:%d" % job.pk, "store:%d" % run.vm_backups.first().store_id} <= set(event.object_keys)


def test_a_report_is_sent_when_only_one_vm_of_five_failed(store, pool):
    import json

    from tests.fixtures.receivers import HttpReceiver

    with HttpReceiver() as receiver:
        channel = channel_to("webhook", ["run.failed", "run.succeeded"], url=receiver.url + "/hook")
        run = BackupRun.objects.create(trigger=Trigger.SCHEDULE, status=RunStatus.RUNNING)
        for n in range(1, 6):
            VmBackup.objects.create(run=run, pool=pool, vm_uuid=f"uuid-{n}", vm_name=f"vm-{n}", store=store,
                                    method=BackupMethod.NORMAL, kind="incremental",
                                    status=RunStatus.FAILED if n == 3 else RunStatus.SUCCESS,
                                    error="the pool refused: SR_BACKEND_FAILURE_44" if n == 3 else "")
        finish_run_if_done(run.pk)
        event = Event.objects.get(name="run.failed")
        assert (event.name, event.severity) == ("run.failed", "error")
        assert event.title == "Backup 5 VMs: 1 of 5 VM(s) failed (pool lab)"
        assert [vm["status"] for vm in event.about["vms"]] == ["success", "success", "failed", "success", "success"]
        assert event.details["error"] == "vm-3: the pool refused: SR_BACKEND_FAILURE_44"
        assert Delivery.objects.get(event=event).channel == channel
        send_due()
        (request,) = wait_for(receiver.ok, message="the partial failure report")
    body = json.loads(request["body"])
    assert body["name"] == "run.failed" and body["title"] == event.title
    assert "vm-3" in body["text"] and "SR_BACKEND_FAILURE_44" in body["text"] and "vm-5" in body["text"]


def test_a_store_that_cannot_be_opened_is_reported(vm_named, store, tmp_path):
    channel_to("webhook", ["run.failed"], url="http://127.0.0.1:9/")
    store.path = str(tmp_path / "unplugged-disk")
    store.save()
    run = request_backup(vm=vm_named("test-vm-1"), store=store, method=BackupMethod.NORMAL, trigger=Trigger.CLI)
    run_in_this_process(run)
    event = Event.objects.get(name="run.failed")
    assert event.about["store"]["name"] == "local"
    assert "data store local" in event.details["error"]
    assert Delivery.objects.filter(event=event).count() == 1


def test_a_receiver_that_is_down_neither_fails_nor_holds_a_backup(vm_named, store):
    channel_to("webhook", ["run.succeeded"], url=f"http://127.0.0.1:{free_port()}/hook")
    run = request_backup(vm=vm_named("test-vm-1"), store=store, method=BackupMethod.NORMAL, trigger=Trigger.CLI)
    run_in_this_process(run)
    assert run.status == RunStatus.SUCCESS
    delivery = Delivery.objects.get(event__name="run.succeeded")
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)   # the backup did not try it
    send_due()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and "could not reach" in delivery.last_error


def test_verify_finding_damage_raises_a_critical_event(vm_named, store):
    from pathlib import Path

    channel_to("webhook", ["verify.damaged"], url="http://127.0.0.1:9/")
    run = request_backup(vm=vm_named("test-vm-1"), store=store, method=BackupMethod.NORMAL, trigger=Trigger.CLI)
    run_in_this_process(run)
    chunks = sorted(p for p in Path(store.path).rglob("*") if p.is_file() and "chunk" in str(p.parent))
    assert chunks, "no chunk files found"
    chunks[0].unlink()
    verify_points(store)
    event = Event.objects.get(name="verify.damaged")
    assert event.severity == "critical" and event.about["store"]["name"] == "local"
    assert event.about["vms"][0]["name"] == "test-vm-1"


def test_a_pool_that_becomes_unreachable_is_reported_once(pool):
    from xenpools.connection import PoolUnreachable
    from xenpools.follower import EventFollower

    follower = EventFollower(pool, stop=None)
    follower._mark_unhealthy(PoolUnreachable("lost the connection to pool lab: connection refused"))
    follower._mark_unhealthy(PoolUnreachable("still down"))
    event = Event.objects.get(name="pool.unreachable")
    assert event.severity == "critical" and event.about["pool"]["name"] == "lab"
    assert "connection refused" in event.details["error"]


def test_a_failed_restore_is_reported_with_its_error(vm_named, store, plan_for):  # noqa: F811
    from .restore.conftest import back_up as back_up_for_restore, restore
    from .restore.test_failures import corrupt_last_data_chunk

    channel_to("webhook", ["restore.failed"], url="http://127.0.0.1:9/")
    vm_backup = back_up_for_restore(vm_named("test-vm-4"), store, BackupMethod.NORMAL)
    corrupt_last_data_chunk(store, vm_backup.restore_point.point_id)
    run = restore(plan_for(vm_backup))
    assert run.status == RunStatus.FAILED
    event = Event.objects.get(name="restore.failed")
    assert event.title == "Restore of test-vm-4: failed" and event.severity == "error"
    assert event.about["pool"]["name"] == "lab" and event.about["store"]["name"] == "local"
    assert "damaged" in event.details["error"]
    assert Delivery.objects.filter(event=event).count() == 1


def test_an_incremental_backup_reports_the_transport_its_manifest_records(make_job, vm_named,  # noqa: F811
                                                                          run_queued_tasks):  # noqa: F811
    channel_to("webhook", ["run.succeeded", "run.warning"], url="http://127.0.0.1:9/")
    job = make_job(name="hourly", selection="explicit")
    job.vms.add(vm_named("test-vm-1"))
    for _ in range(2):
        start_job_run(job, trigger=Trigger.MANUAL)
        run_queued_tasks()
    first, second = Event.objects.filter(name__startswith="run.").order_by("created")
    assert first.about["vms"][0]["transfer"] == "full XVA export"
    vm = second.about["vms"][0]
    assert vm["kind"] == "Incremental", vm
    assert vm["transfer"] in ("CBT + NBD (changed blocks)", "VHD delta (changed blocks)")
    assert vm["reason"].startswith("incremental")


def test_a_vm_that_misses_its_rpo_is_reported_once_per_lapse(make_job, vm_named):  # noqa: F811
    from datetime import timedelta

    from django.utils import timezone

    from backups.models import RestorePoint
    from backups.notifications import rpo_missed

    vm = vm_named("test-vm-1")
    job = make_job(selection="explicit", rpo_hours=24)
    job.vms.add(vm)
    now = timezone.now()
    RestorePoint.objects.create(store=job.store, job=job, point_id=f"{vm.uuid}/20261130T000000Z", vm_uuid=vm.uuid,
                                vm_name=vm.name, taken_at=now - timedelta(hours=30), method="normal", kind="full")

    rpo_missed(now=now)
    rpo_missed(now=now + timedelta(minutes=1))          # the watchdog's next minute: no second report

    (event,) = Event.objects.filter(name="vm.rpo_missed")
    assert event.title == "test-vm-1 missed its RPO: newest good restore point 30 h old, RPO 24 h"
    assert f"job:{job.pk}" in event.object_keys
    RestorePoint.objects.create(store=job.store, job=job, point_id=f"{vm.uuid}/20261201T000000Z", vm_uuid=vm.uuid,
                                vm_name=vm.name, taken_at=now + timedelta(hours=1), method="normal", kind="full")
    rpo_missed(now=now + timedelta(hours=2))             # met again: nothing
    assert Event.objects.filter(name="vm.rpo_missed").count() == 1
    rpo_missed(now=now + timedelta(hours=26))            # lapsed anew: reported again
    assert Event.objects.filter(name="vm.rpo_missed").count() == 2
