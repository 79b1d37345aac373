from datetime import datetime, timedelta, timezone

import pytest

from backups.repository import BackupSummary, LastGoodBackupError, RetentionPolicy, plan_prune

from .conftest import CHUNK
from .diskdata import write_disk

START = datetime(2026, 3, 31, 22, 0, tzinfo=timezone.utc)  # a Tuesday


def summaries(vm, times, damaged=()):
    result = []
    for t in times:
        rp_id = f"{vm}/{t.strftime('%Y%m%dT%H%M%SZ')}"
        result.append(BackupSummary(id=rp_id, vm_uuid=vm, timestamp=rp_id.split("/")[1],
                                    started_at=t, damaged={"x": 1} if t in damaged else None))
    return result


def every_12_hours(count):
    return [START - timedelta(hours=12 * i) for i in range(count)]


def kept_times(plan, backups):
    return sorted((s.started_at for s in backups if s.id in plan.keep), reverse=True)


def test_keep_last_n():
    backups = summaries("vm-a", every_12_hours(10))
    plan = plan_prune(backups, RetentionPolicy(keep_last=3))
    assert kept_times(plan, backups) == every_12_hours(3)
    assert len(plan.remove) == 7


def test_keep_daily_keeps_the_newest_of_each_day():
    backups = summaries("vm-a", every_12_hours(10))  # two a day
    plan = plan_prune(backups, RetentionPolicy(keep_daily=3))
    assert kept_times(plan, backups) == [START, START - timedelta(hours=24),
                                         START - timedelta(hours=48)]


def test_keep_weekly_and_monthly():
    times = [START - timedelta(days=d) for d in range(0, 100)]
    backups = summaries("vm-a", times)
    weekly = kept_times(plan_prune(backups, RetentionPolicy(keep_weekly=4)), backups)
    assert [t.isocalendar()[1] for t in weekly] == [14, 13, 12, 11]
    assert weekly[0] == START and weekly[1] == START - timedelta(days=2)  # Sunday of week 13
    monthly = kept_times(plan_prune(backups, RetentionPolicy(keep_monthly=3)), backups)
    assert [(t.month, t.day) for t in monthly] == [(3, 31), (2, 28), (1, 31)]


def test_rules_combine_and_apply_per_vm():
    backups = summaries("vm-a", every_12_hours(10)) + summaries("vm-b", every_12_hours(4))
    plan = plan_prune(backups, RetentionPolicy(keep_last=1, keep_daily=2))
    assert sorted(plan.keep["vm-a/" + START.strftime("%Y%m%dT%H%M%SZ")]) == ["daily", "last"]
    assert len([k for k in plan.keep if k.startswith("vm-a")]) == 2
    assert len([k for k in plan.keep if k.startswith("vm-b")]) == 2


def test_no_rule_keeps_everything():
    backups = summaries("vm-a", every_12_hours(5))
    assert plan_prune(backups, RetentionPolicy()).remove == []


def test_it_never_removes_the_only_good_backup_unless_confirmed():
    times = every_12_hours(4)
    backups = summaries("vm-a", times, damaged=set(times[:2]))
    plan = plan_prune(backups, RetentionPolicy(keep_last=2))
    assert plan.keep[backups[2].id] == ["only good backup of the VM"]
    assert backups[3].id in plan.remove
    confirmed = plan_prune(backups, RetentionPolicy(keep_last=2), confirm_last=True)
    assert backups[2].id in confirmed.remove


def test_unreadable_and_running_parents_are_kept():
    backups = summaries("vm-a", every_12_hours(4))
    backups.append(BackupSummary(id="vm-a/20200101T000000Z", vm_uuid="vm-a",
                                 timestamp="20200101T000000Z", error="checksum mismatch"))
    plan = plan_prune(backups, RetentionPolicy(keep_last=1), protected={backups[3].id})
    assert plan.keep["vm-a/20200101T000000Z"] == ["unreadable manifest"]
    assert plan.keep[backups[3].id] == ["parent of a running backup"]
    assert sorted(plan.remove) == sorted([backups[1].id, backups[2].id])


def test_prune_deletes_manifests_and_gc_reclaims_their_chunks(repo, store_dir):
    made = []
    for day in range(3):
        with repo.start_backup("vm-a", START - timedelta(days=day)) as writer:
            write_disk(writer, "xvda", bytes([day + 1]) * CHUNK)
            made.append(writer.commit())
    plan = repo.prune(RetentionPolicy(keep_last=1))
    assert sorted(plan.remove) == sorted(m.id for m in made[1:])
    assert [s.id for s in repo.list_backups()] == [made[0].id]
    assert not (store_dir / "backups" / made[1].id).exists()
    report = repo.collect_garbage(grace_period=0, now=START.timestamp() + 10**9)
    assert report.deleted_chunks == 2


def test_deleting_the_last_good_backup_needs_confirmation(repo):
    with repo.start_backup("vm-a", START) as writer:
        write_disk(writer, "xvda", b"a" * CHUNK)
        only = writer.commit()
    with pytest.raises(LastGoodBackupError):
        repo.delete_backup(only.id)
    repo.delete_backup(only.id, confirm_last=True)
    assert repo.list_backups() == []


def test_prune_keeps_the_parent_of_a_running_backup(repo):
    made = []
    for day in range(2):
        with repo.start_backup("vm-a", START - timedelta(days=1 - day)) as writer:
            write_disk(writer, "xvda", bytes([day + 1]) * CHUNK)
            made.append(writer.commit())
    with repo.start_backup("vm-a", START + timedelta(days=1), parent=made[0].id):
        plan = repo.prune(RetentionPolicy(keep_last=1))
        assert plan.remove == []
        with pytest.raises(LastGoodBackupError, match="running"):
            repo.delete_backup(made[0].id)
