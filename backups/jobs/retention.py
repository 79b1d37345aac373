"""Retention that runs itself: after each run of a job, its restore points are pruned by the
job's rules; the preview page shows the very plan the prune will carry out.

- Points belong to the job that made them (RestorePoint.job); "Back up now" points are kept
  until pruned by hand.
- A VM still in its pool: keep-last / hourly / daily / weekly / monthly / yearly
  (repository.prune.plan_prune, the same function the store-wide prune uses).
- A VM deleted from its pool: its newest good point is kept for `deleted_vm_keep_days` after
  the deletion was seen, then removed too (audited), so it is neither lost at once nor kept
  forever.
- Never removed: points protected by hand, the parent of a running backup, unreadable
  manifests, and a VM's only good point (while the VM exists).
Chunks are reclaimed by the store's garbage collection afterwards, never in the same step.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event
from xenpools.models import VM

from ..choices import VerifyState
from ..repository import RetentionPolicy
from ..repository.prune import PrunePlan, forget, plan_prune, running_parents


@dataclass
class JobRetention:
    policy: RetentionPolicy
    deleted_vm_keep: timedelta

    @classmethod
    def of(cls, job):
        return cls(
            policy=RetentionPolicy(keep_last=job.keep_last, keep_hourly=job.keep_hourly, keep_daily=job.keep_daily,
                                   keep_weekly=job.keep_weekly, keep_monthly=job.keep_monthly,
                                   keep_yearly=job.keep_yearly),
            deleted_vm_keep=timedelta(days=job.deleted_vm_keep_days),
        )


@dataclass
class CatalogPoint:
    """A RestorePoint row in the shape plan_prune reads (like repository.BackupSummary)."""

    id: str
    vm_uuid: str
    started_at: datetime
    is_good: bool
    error: str | None = None

    @classmethod
    def of(cls, point):
        return cls(id=point.point_id, vm_uuid=point.vm_uuid, started_at=point.taken_at,
                   is_good=point.verify_state != VerifyState.DAMAGED)


@dataclass
class RetentionPlan:
    keep: dict = field(default_factory=dict)          # point id -> [reasons]
    remove: list = field(default_factory=list)
    deleted_vms: dict = field(default_factory=dict)   # vm uuid -> (deleted at, kept until)

    def reasons(self, point_id):
        return self.keep.get(point_id, [])


def deleted_vm_times(vm_uuids):
    """{vm uuid: when it was seen deleted} for VMs no longer in any pool. A uuid with a live VM
    row is not deleted (a VM restored with its identity is the same VM again)."""
    rows = VM.objects.filter(uuid__in=list(vm_uuids), is_snapshot=False).values_list("uuid", "removed_at")
    live, removed = set(), {}
    for uuid, removed_at in rows:
        if removed_at is None:
            live.add(uuid)
        else:
            removed[uuid] = max(removed_at, removed.get(uuid, removed_at))
    return {uuid: at for uuid, at in removed.items() if uuid not in live}


def plan_points(points, retention: JobRetention, *, now=None, running=(), deleted=None) -> RetentionPlan:
    """The plan for catalog rows (all of one job on one store); the preview and apply_retention
    both come here."""
    now = now or timezone.now()
    points = list(points)
    pinned = {p.point_id for p in points if p.protected}
    deleted = deleted_vm_times({p.vm_uuid for p in points}) if deleted is None else deleted
    plan = RetentionPlan()
    by_vm = defaultdict(list)
    for point in points:
        by_vm[point.vm_uuid].append(point)
    present = [CatalogPoint.of(p) for uuid, rows in by_vm.items() if uuid not in deleted for p in rows]
    base = plan_prune(present, retention.policy, protected=set(running), pinned=pinned)
    plan.keep.update(base.keep)
    plan.remove.extend(base.remove)
    for uuid, deleted_at in deleted.items():
        rows = sorted(by_vm.get(uuid, []), key=lambda p: p.taken_at, reverse=True)
        if not rows:
            continue
        kept_until = deleted_at + retention.deleted_vm_keep
        plan.deleted_vms[uuid] = (deleted_at, kept_until)
        good = [p for p in rows if p.verify_state != VerifyState.DAMAGED]
        newest = good[0] if good and now < kept_until else None
        for point in rows:
            if point.point_id in pinned:
                plan.keep.setdefault(point.point_id, []).append("protected")
            elif point.point_id in running:
                plan.keep.setdefault(point.point_id, []).append("parent of a running backup")
            elif point is newest:
                plan.keep.setdefault(point.point_id, []).append(
                    f"VM deleted; last point kept until {kept_until:%Y-%m-%d}")
            else:
                plan.remove.append(point.point_id)
    return plan


def preview(job, retention: JobRetention | None = None, *, now=None) -> RetentionPlan:
    """What the job's (or a proposed) policy would keep and remove now, without touching anything."""
    from ..models import RestorePoint

    points = RestorePoint.objects.filter(job=job, store=job.store).order_by("-taken_at")
    return plan_points(points, retention or JobRetention.of(job), now=now)


def apply_retention(job, *, now=None) -> RetentionPlan:
    """Prune the job's restore points by its policy (manifests first, then the catalog rows)."""
    from ..models import RestorePoint
    from ..stores import open_repository

    repo = open_repository(job.store)
    points = RestorePoint.objects.filter(job=job, store=job.store)
    plan = plan_points(points, JobRetention.of(job), now=now, running=running_parents(repo))
    if not plan.remove:
        return plan
    forget(repo, plan.remove)
    with transaction.atomic():
        RestorePoint.objects.filter(store=job.store, point_id__in=plan.remove, protected=False).delete()
        record_event(AuditAction.PRUNE, target=job.store,
                     message=f"job {job.name}: retention removed {len(plan.remove)} restore point(s), "
                             f"kept {len(plan.keep)}")
    return plan


__all__ = ["JobRetention", "RetentionPlan", "PrunePlan", "apply_retention", "plan_points", "preview"]
