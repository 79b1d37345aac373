"""Retention: which restore points a policy keeps, and deleting the others.

Per VM, newest first: keep the last N; keep the newest backup of each of the last H hours,
D days, W ISO weeks, M months and Y years (UTC). A policy with no rule keeps everything.
Never removed: an unreadable manifest (kept for inspection), the parent of a running backup,
a point protected by hand (`pinned`), and, unless confirm_last=True, the newest good backup
of a VM when the policy would keep no good one.
Chunks are reclaimed afterwards by gc.
"""
from collections import defaultdict
from dataclasses import dataclass, field

from .leases import list_leases
from .manifest import damaged_key, manifest_key


@dataclass
class RetentionPolicy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_hourly: int = 0
    keep_yearly: int = 0

    @property
    def is_empty(self):
        return not (self.keep_last or self.keep_hourly or self.keep_daily or self.keep_weekly
                    or self.keep_monthly or self.keep_yearly)


@dataclass
class PrunePlan:
    keep: dict = field(default_factory=dict)  # restore point id -> list of reasons
    remove: list = field(default_factory=list)


def _keep(plan, rp_id, reason):
    plan.keep.setdefault(rp_id, []).append(reason)


def plan_prune(summaries, policy: RetentionPolicy, *, confirm_last=False, protected=(), pinned=()):
    """summaries: objects with id, vm_uuid, started_at, error and is_good (BackupSummary, or the
    console's catalog rows), so that a preview and the real prune make the same plan."""
    plan = PrunePlan()
    by_vm = defaultdict(list)
    for s in summaries:
        by_vm[s.vm_uuid].append(s)
    for vm_backups in by_vm.values():
        readable = sorted((s for s in vm_backups if s.error is None),
                          key=lambda s: s.started_at, reverse=True)
        for s in vm_backups:
            if s.error is not None:
                _keep(plan, s.id, "unreadable manifest")
            if s.id in pinned:
                _keep(plan, s.id, "protected")
        if policy.is_empty:
            for s in readable:
                _keep(plan, s.id, "no retention rule")
            continue
        for s in readable[:policy.keep_last]:
            _keep(plan, s.id, "last")
        for rule, count, bucket in (
            ("hourly", policy.keep_hourly, lambda t: (t.date(), t.hour)),
            ("daily", policy.keep_daily, lambda t: t.date()),
            ("weekly", policy.keep_weekly, lambda t: t.isocalendar()[:2]),
            ("monthly", policy.keep_monthly, lambda t: (t.year, t.month)),
            ("yearly", policy.keep_yearly, lambda t: t.year),
        ):
            seen = set()
            for s in readable:
                if len(seen) >= count:
                    break
                key = bucket(s.started_at)
                if key not in seen:
                    seen.add(key)
                    _keep(plan, s.id, rule)
        for s in readable:
            if s.id in protected:
                _keep(plan, s.id, "parent of a running backup")
        good = [s for s in readable if s.is_good]
        if good and not any(s.id in plan.keep for s in good) and not confirm_last:
            _keep(plan, good[0].id, "only good backup of the VM")
        plan.remove.extend(s.id for s in readable if s.id not in plan.keep)
    return plan


def running_parents(repo):
    """Restore points a running backup builds on: never removed under it."""
    return {lease.parent for lease in list_leases(repo.backend) if lease.parent}


def prune(repo, policy: RetentionPolicy, *, vm_uuid=None, confirm_last=False, dry_run=False, pinned=()):
    plan = plan_prune(repo.list_backups(vm_uuid), policy, confirm_last=confirm_last,
                      protected=running_parents(repo), pinned=pinned)
    if not dry_run:
        forget(repo, plan.remove)
    return plan


def forget(repo, rp_ids):
    """Delete restore points' manifests (their chunks go at the next gc)."""
    for rp_id in rp_ids:
        repo.backend.delete(manifest_key(rp_id))  # first: the backup stops existing
        repo.backend.delete(damaged_key(rp_id))
