"""Retention that runs itself: the preview is the plan the prune carries out, on a timeline of
points across two years; protected points survive prune and GC; a deleted VM's points follow
their own retention."""
import random
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest

from backups.choices import BackupKind, BackupMethod
from backups.jobs.retention import JobRetention, apply_retention, preview
from backups.maintenance import collect_garbage, refresh_catalog
from backups.models import RestorePoint
from backups.repository import RetentionPolicy
from backups.stores import open_repository
from xenpools.models import VM

NOW = datetime(2026, 12, 1, 23, 30, tzinfo=dt_timezone.utc)
UUIDS = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"]


def write_point(repo, vm_uuid, taken_at, content: bytes):
    """A real (tiny) backup on the store, so prune and GC act on manifests and chunks."""
    with repo.start_backup(vm_uuid, taken_at, method=BackupMethod.NORMAL) as writer:
        disk = writer.add_disk("vbd0", 1024 * 1024)
        disk.write(0, content.ljust(1024 * 1024, b"\0"))
        disk.finish()
        writer.set_metadata({"vm_name": f"vm-{vm_uuid[:4]}", "kind": BackupKind.FULL})
        return writer.commit()


def timeline(seed=7):
    """Irregular backups over two years: nightly for the last months, sparser before, some
    days with several points (hourly rules), some gaps."""
    rng = random.Random(seed)
    times, t = [], NOW - timedelta(days=730)
    while t < NOW:
        times.append(t)
        recent = NOW - t < timedelta(days=45)
        t += timedelta(hours=rng.choice([1, 3, 24, 24, 24]) if recent else rng.choice([24, 48, 72, 168]))
    return times


@pytest.fixture
def catalog_points(make_job, db):
    job = make_job(keep_last=3, keep_hourly=4, keep_daily=7, keep_weekly=8, keep_monthly=12, keep_yearly=3)
    rows = []
    for uuid in UUIDS:
        for taken_at in timeline(seed=int(uuid[0])):
            rows.append(RestorePoint(store=job.store, job=job, point_id=f"{uuid}/{taken_at:%Y%m%dT%H%M%SZ}",
                                     vm_uuid=uuid, vm_name="vm", taken_at=taken_at, method=BackupMethod.NORMAL,
                                     kind=BackupKind.FULL))
    RestorePoint.objects.bulk_create(rows)
    return job


def test_retention_keeps_exactly_what_the_preview_said_over_two_years(catalog_points, monkeypatch):
    job = catalog_points
    before = set(RestorePoint.objects.filter(job=job).values_list("point_id", flat=True))
    planned = preview(job, now=NOW)

    applied = apply_retention(job, now=NOW)

    after = set(RestorePoint.objects.filter(job=job).values_list("point_id", flat=True))
    assert (set(planned.keep), sorted(planned.remove)) == (set(applied.keep), sorted(applied.remove))
    assert after == set(planned.keep) and before - after == set(planned.remove)
    assert len(before) > 500 and 40 < len(after) < 80      # a real thinning, not all or nothing
    for uuid in UUIDS:
        kept = sorted(RestorePoint.objects.filter(job=job, vm_uuid=uuid).values_list("taken_at", flat=True))
        assert len({t.year for t in kept}) == 3                  # yearly: 3 years
        assert len({(t.year, t.month) for t in kept}) >= 12      # monthly: 12 months
        newest = list(RestorePoint.objects.filter(job=job, vm_uuid=uuid).order_by("-taken_at")[:3])
        assert all("last" in planned.reasons(p.point_id) for p in newest)


def test_a_proposed_policy_previews_without_touching_anything(catalog_points):
    job = catalog_points
    count = RestorePoint.objects.filter(job=job).count()
    lean = preview(job, JobRetention(RetentionPolicy(keep_last=1), timedelta(days=90)), now=NOW)

    assert len(lean.keep) == len(UUIDS)
    assert RestorePoint.objects.filter(job=job).count() == count


def test_a_protected_point_survives_prune_and_gc(make_job, store, db):
    job = make_job(keep_last=1)
    repo = open_repository(store)
    old = write_point(repo, UUIDS[0], NOW - timedelta(days=3), b"old unique data")
    write_point(repo, UUIDS[0], NOW - timedelta(days=2), b"middle data")
    write_point(repo, UUIDS[0], NOW - timedelta(days=1), b"new data")
    refresh_catalog(store)
    RestorePoint.objects.filter(store=store).update(job=job)
    RestorePoint.objects.filter(point_id=old.id).update(protected=True, protected_note="legal hold")

    plan = apply_retention(job, now=NOW)
    collect_garbage(store, grace_period=0)

    assert plan.reasons(old.id) == ["protected"]
    assert len(plan.remove) == 1
    remaining = [b.id for b in open_repository(store).list_backups(UUIDS[0])]
    assert old.id in remaining and len(remaining) == 2
    data = b"".join(d for _, d in open_repository(store).open_disk(old.id, "vbd0").stream())
    assert data.startswith(b"old unique data")


def test_a_deleted_vms_last_point_is_kept_for_its_own_period_then_removed(make_job, pool):
    vm = VM.objects.filter(pool=pool, is_snapshot=False).first()
    job = make_job(keep_last=5, deleted_vm_keep_days=90)
    times = [NOW - timedelta(days=10 - i) for i in range(3)]
    points = [RestorePoint.objects.create(store=job.store, job=job, point_id=f"{vm.uuid}/{t:%Y%m%dT%H%M%SZ}",
                                          vm_uuid=vm.uuid, vm_name=vm.name, taken_at=t,
                                          method=BackupMethod.NORMAL, kind=BackupKind.FULL) for t in times]
    deleted_at = NOW - timedelta(days=5)
    VM.objects.filter(pk=vm.pk).update(removed_at=deleted_at)

    soon = preview(job, now=NOW)
    assert soon.keep == {points[-1].point_id: [f"VM deleted; last point kept until {deleted_at + timedelta(days=90):%Y-%m-%d}"]}
    assert sorted(soon.remove) == sorted(p.point_id for p in points[:-1])
    assert soon.deleted_vms[vm.uuid][0] == deleted_at

    later = apply_retention(job, now=deleted_at + timedelta(days=91))
    assert sorted(later.remove) == sorted(p.point_id for p in points)
    assert not RestorePoint.objects.filter(vm_uuid=vm.uuid).exists()
