"""Store maintenance the console runs: the restore point catalog, verify, prune, gc.

The manifests on the store are the truth; RestorePoint rows are an index of them that
`refresh_catalog` rebuilds (a store adopted from elsewhere, points deleted by prune).
"""
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event

from .choices import BackupKind, VerifyState
from .models import RestorePoint
from .notifications import verify_damaged
from .repository import RetentionPolicy
from .stores import open_repository


def refresh_catalog(store):
    """Make the RestorePoint rows match the store's manifests. Returns (added, removed)."""
    repo = open_repository(store)
    summaries = {s.id: s for s in repo.list_backups()}
    existing = {p.point_id: p for p in RestorePoint.objects.filter(store=store)}
    added = 0
    with transaction.atomic():
        for point_id, summary in summaries.items():
            state = VerifyState.DAMAGED if summary.damaged else None
            if point_id in existing:
                if state and existing[point_id].verify_state != state:
                    RestorePoint.objects.filter(pk=existing[point_id].pk).update(verify_state=state)
                continue
            if summary.error:
                continue
            manifest = repo.load_manifest(point_id)
            metadata = manifest.metadata
            RestorePoint.objects.create(
                store=store, point_id=point_id, vm_uuid=summary.vm_uuid,
                vm_name=summary.vm_name or metadata.get("vm_name") or summary.vm_uuid,
                pool_uuid=metadata.get("pool_uuid", ""), taken_at=summary.started_at,
                method=summary.method or "", kind=metadata.get("kind") or BackupKind.FULL,
                parent_point_id=summary.parent or "", virtual_size=sum(summary.disks.values()),
                bytes_new=summary.totals.get("bytes_new", 0), bytes_stored=summary.totals.get("bytes_stored", 0),
                has_memory=bool(metadata.get("has_memory")), verify_state=state or VerifyState.UNVERIFIED,
            )
            added += 1
        gone = [pk for point_id, p in existing.items() if point_id not in summaries for pk in [p.pk]]
        RestorePoint.objects.filter(pk__in=gone).delete()
    return added, len(gone)


def points_to_verify(store, older_than_days: int, now=None):
    """The restore points never verified, or not verified in the last `older_than_days` days."""
    cutoff = (now or timezone.now()) - timezone.timedelta(days=older_than_days)
    return list(RestorePoint.objects.filter(store=store).filter(Q(verified_at__isnull=True) | Q(verified_at__lt=cutoff)))


def verify_points(store, points=None, on_progress=None):
    """Re-read every chunk of the given restore points (all by default) and record the result."""
    repo = open_repository(store)
    ids = [p.point_id for p in points] if points is not None else None
    report = repo.verify(ids, on_progress=on_progress)
    now = timezone.now()
    for result in report.backups:
        RestorePoint.objects.filter(store=store, point_id=result.id).update(
            verify_state=VerifyState.OK if result.ok else VerifyState.DAMAGED, verified_at=now)
    damaged = report.damaged
    record_event(AuditAction.VERIFY, target=store, outcome="success" if not damaged else "failure",
                 message=f"verified {len(report.backups)} restore point(s), {report.chunks_checked} chunks: "
                         + (f"{len(damaged)} damaged ({', '.join(b.id for b in damaged)})" if damaged else "all good"))
    if damaged:
        verify_damaged(store, [b.id for b in damaged])
    return report


def prune_store(store, policy: RetentionPolicy, *, vm_uuid=None, confirm_last=False, dry_run=False):
    repo = open_repository(store)
    pinned = set(RestorePoint.objects.filter(store=store, protected=True).values_list("point_id", flat=True))
    plan = repo.prune(policy, vm_uuid=vm_uuid, confirm_last=confirm_last, dry_run=dry_run, pinned=pinned)
    if not dry_run:
        RestorePoint.objects.filter(store=store, point_id__in=plan.remove).delete()
        record_event(AuditAction.PRUNE, target=store,
                     message=f"pruned {len(plan.remove)} restore point(s), kept {len(plan.keep)} "
                             f"(last {policy.keep_last}, daily {policy.keep_daily}, weekly {policy.keep_weekly}, "
                             f"monthly {policy.keep_monthly})")
    return plan


def prune_preview(store, policy, *, confirm_last=False):
    """What a prune with these rules would keep and remove now (nothing is removed), per VM
    newest first: [{"vm_name", "vm_uuid", "points": [{"point_id", "point" (the index row or
    None), "kept", "reasons"}], "kept", "removed"}]."""
    plan = prune_store(store, policy, confirm_last=confirm_last, dry_run=True)
    ids = [*plan.keep, *plan.remove]
    indexed = {p.point_id: p for p in RestorePoint.objects.filter(store=store, point_id__in=ids)}
    by_vm = {}
    for point_id in ids:
        point = indexed.get(point_id)
        vm_uuid = point.vm_uuid if point else point_id.partition("/")[0]
        row = by_vm.setdefault(vm_uuid, {"vm_uuid": vm_uuid, "vm_name": point.vm_name if point else vm_uuid,
                                         "points": [], "kept": 0, "removed": 0})
        kept = point_id in plan.keep
        row["points"].append({"point_id": point_id, "point": point, "kept": kept,
                              "reasons": plan.keep.get(point_id, [])})
        row["kept" if kept else "removed"] += 1
    for row in by_vm.values():
        row["points"].sort(key=lambda p: p["point_id"], reverse=True)
    return sorted(by_vm.values(), key=lambda row: row["vm_name"].lower()), len(plan.keep), len(plan.remove)


def collect_garbage(store, *, dry_run=False, grace_period=None, on_progress=None):
    repo = open_repository(store)
    options = {"dry_run": dry_run, "on_progress": on_progress}
    if grace_period is not None:
        options["grace_period"] = grace_period
    report = repo.collect_garbage(**options)
    if not dry_run:
        record_event(AuditAction.GC, target=store,
                     message=f"garbage collection removed {report.deleted_chunks} chunk(s), "
                             f"{report.deleted_bytes} bytes, {report.deleted_temporaries} temporary file(s)")
    return report



# -- maintenance that runs itself: one schedule per action, on the store's workers ---------
def save_maintenance_schedule(store, data, *, user=None, instance=None):
    """Create or change a store's maintenance schedule (data: a valid form's cleaned_data)
    and its django-q2 row; audited."""
    from .jobs.schedules import describe, sync_maintenance
    from .models import StoreMaintenanceSchedule

    created = instance is None
    before = None if created else _maintenance_snapshot(instance)
    with transaction.atomic():
        maintenance = instance or StoreMaintenanceSchedule(store=store)
        maintenance.action = data["action"]
        maintenance.cron = data["cron"]
        maintenance.timezone = data["timezone"]
        maintenance.enabled = data["enabled"]
        days = data.get("older_than_days") or 0
        maintenance.options = {"older_than_days": days} if maintenance.action == "verify" and days else {}
        maintenance.save()
        sync_maintenance(maintenance)
        record_event(AuditAction.CREATE if created else AuditAction.UPDATE, target=maintenance, actor=user,
                     before=before, after=_maintenance_snapshot(maintenance),
                     message=f"{maintenance.get_action_display()} of data store {store.name} scheduled: "
                             f"{describe(maintenance.cron)} ({maintenance.timezone})"
                             + ("" if maintenance.enabled else ", disabled"))
    return maintenance


def remove_maintenance_schedule(maintenance, *, user=None):
    from .jobs.schedules import describe

    with transaction.atomic():
        if maintenance.q_schedule_id:
            maintenance.q_schedule.delete()
        record_event(AuditAction.DELETE, target=maintenance, actor=user, before=_maintenance_snapshot(maintenance),
                     message=f"{maintenance.get_action_display()} of data store {maintenance.store.name} "
                             f"no longer scheduled ({describe(maintenance.cron)})")
        maintenance.delete()


def _maintenance_snapshot(maintenance):
    return {"store": maintenance.store.name, "action": maintenance.action, "cron": maintenance.cron,
            "timezone": maintenance.timezone, "enabled": maintenance.enabled, "options": maintenance.options}
