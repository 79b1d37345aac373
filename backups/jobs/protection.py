"""Protection status and RPO per VM: the last good restore point, the jobs that cover the VM,
the tightest RPO among them, and whether that RPO is met as of `now`.

Coverage is computed on read, with a fixed number of queries whatever the number of VMs,
jobs or runs: the VM rows are loaded once and indexed by pool, tag and power state, each
job's rule is evaluated once as a few set operations on them (_Inventory mirrors
selection.rule_filter), and the last good point per VM comes from one grouped query. A materialised coverage table was the alternative; it was not
chosen because it needs refreshing after every inventory sync, job save and run, and a VM
that appeared since the last refresh would read as unprotected although the next run backs
it up. Evaluating on read always agrees with select_vms (tests/backups/jobs/test_protection.py
checks that), and stays well under the page budget at 2,000 VMs and 200 jobs
(bench/jobs_scale.py).
"""
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import BooleanField, ExpressionWrapper, Max, Q
from django.utils import timezone

from xenpools.models import VM

from ..choices import VerifyState
from ..models import BackupJob, JobSchedule, RestorePoint
from .choices import Protection, SelectionMode
from .schedules import rpo_of
from .selection import glob_to_regex

AT_RISK = (Protection.MISSED, Protection.NEVER)
LIST_JOBS = 3


@dataclass
class VmProtection:
    """One VM's protection as of `now`."""

    vm_id: int
    vm_uuid: str
    vm_name: str
    pool_id: int
    deleted: bool
    status: str
    jobs: list = field(default_factory=list)        # covering BackupJobs, tightest RPO first
    rpo: timedelta | None = None                    # the tightest RPO of those jobs
    last_good_at: datetime | None = None            # newest restore point not known to be damaged
    age: timedelta | None = None

    @property
    def label(self):
        return Protection(self.status).label

    @property
    def badge(self):
        return Protection.badge(self.status)

    @property
    def at_risk(self):
        return self.status in AT_RISK

    @property
    def first_jobs(self):
        """The jobs a list row names (the tightest RPOs); the VM page names them all."""
        return self.jobs[:LIST_JOBS]

    @property
    def more_jobs(self):
        return max(0, len(self.jobs) - LIST_JOBS)


# -- coverage ---------------------------------------------------------------------------------
@dataclass
class _Rules:
    """A job's selection, loaded with a fixed number of queries for all jobs."""

    job: BackupJob
    explicit: set = field(default_factory=set)      # VM ids chosen by hand
    excluded: set = field(default_factory=set)
    pools: set = field(default_factory=set)


class _Inventory:
    """Live VM rows indexed by pool, tag and power state, so that a rule is a few set
    operations (2,000 VMs x 200 jobs stays a matter of milliseconds)."""

    def __init__(self, rows):
        self.rows = {row["id"]: row for row in rows if not row["deleted"]}
        self.by_pool, self.by_tag, self.by_state, self.by_name = {}, {}, {}, {}
        for vm_id, row in self.rows.items():
            self.by_pool.setdefault(row["pool_id"], set()).add(vm_id)
            self.by_state.setdefault(row["power_state"], set()).add(vm_id)
            for tag in (row["tags_index"] or "").strip("|").split("|"):
                if tag:
                    self.by_tag.setdefault(tag, set()).add(vm_id)

    def _union(self, index, keys):
        return set().union(*(index.get(key, ()) for key in keys))

    def matching(self, job, pool_ids) -> set:
        """VM ids the job's rule selects; agrees with selection.rule_filter."""
        chosen = set(self.rows)
        if pool_ids:
            chosen &= self._union(self.by_pool, pool_ids)
        if job.rule_tags:
            chosen &= self._union(self.by_tag, job.rule_tags)
        if job.rule_power_states:
            chosen &= self._union(self.by_state, job.rule_power_states)
        if job.rule_name_pattern:
            chosen &= self._named(job.rule_name_pattern)
        return chosen

    def _named(self, pattern) -> set:
        if pattern not in self.by_name:             # jobs often share a pattern: match it once
            name = re.compile(glob_to_regex(pattern), re.IGNORECASE)
            self.by_name[pattern] = {vm_id for vm_id, row in self.rows.items() if name.search(row["name"])}
        return self.by_name[pattern]


def _job_rules(jobs):
    rules = {job.pk: _Rules(job) for job in jobs}
    through = [(BackupJob.vms.through, "vm_id", "explicit"), (BackupJob.excluded_vms.through, "vm_id", "excluded"),
               (BackupJob.rule_pools.through, "pool_id", "pools")]
    for model, column, attribute in through:
        for job_id, value in model.objects.filter(backupjob_id__in=rules).values_list("backupjob_id", column):
            getattr(rules[job_id], attribute).add(value)
    return rules


def job_rpos(jobs):
    """{job id: RPO or None} (BackupJob.rpo for many jobs: their schedules in one query)."""
    schedules = {}
    for job_id, cron, tz in JobSchedule.objects.filter(enabled=True).values_list("job_id", "cron", "timezone"):
        schedules.setdefault(job_id, []).append((cron, tz))
    return {job.pk: rpo_of(job.rpo_hours, schedules.get(job.pk, [])) for job in jobs}


def covering_jobs(rows, jobs):
    """{VM id: [job, ...]} for VM rows: explicit membership or rule match, minus the job's
    excluded VMs; deleted VMs are covered by nothing. Disabled jobs cover nothing (their
    schedules never fire)."""
    covering = {row["id"]: [] for row in rows}
    inventory = _Inventory(rows)
    for rules in _job_rules([job for job in jobs if job.enabled]).values():
        job = rules.job
        if job.selection == SelectionMode.EXPLICIT:
            chosen = rules.explicit & inventory.rows.keys()
        else:
            chosen = inventory.matching(job, rules.pools)
        for vm_id in chosen - rules.excluded:
            covering[vm_id].append(job)
    return covering


# -- the last good point ------------------------------------------------------------------
def last_good_points(uuids=None):
    """{VM uuid: time of its newest restore point on any store that is not damaged}."""
    points = RestorePoint.objects.exclude(verify_state=VerifyState.DAMAGED)
    if uuids is not None:
        points = points.filter(vm_uuid__in=list(uuids))
    return dict(points.values("vm_uuid").annotate(last=Max("taken_at")).values_list("vm_uuid", "last").order_by())


# -- status ---------------------------------------------------------------------------------
VM_FIELDS = ("id", "uuid", "name", "pool_id", "tags_index", "power_state")


def status_for(*, deleted, jobs, rpo, last_good_at, now):
    if deleted or not jobs:
        return Protection.UNPROTECTED
    if last_good_at is None:
        return Protection.NEVER
    if rpo is not None and now - last_good_at > rpo:
        return Protection.MISSED
    return Protection.MET              # within the RPO, or no RPO to miss (a job without schedules)


def protection_map(vms=None, *, now=None, include_deleted=True) -> dict[int, VmProtection]:
    """{VM id: VmProtection} for `vms` (a VM queryset; default: every VM, deleted ones only
    when they still have a good restore point). Seven queries whatever the sizes."""
    now = now or timezone.now()
    queryset = VM.objects.filter(is_snapshot=False) if vms is None else vms
    # "deleted" as a boolean from the database: converting 2,000 removed_at values is not free.
    rows = list(queryset.order_by().values(*VM_FIELDS, deleted=ExpressionWrapper(
        Q(removed_at__isnull=False), output_field=BooleanField())))
    last_good = last_good_points(None if vms is None else {row["uuid"] for row in rows})
    if vms is None:
        rows = [row for row in rows if not row["deleted"] or (include_deleted and row["uuid"] in last_good)]
    elif not include_deleted:
        rows = [row for row in rows if not row["deleted"]]
    jobs = list(BackupJob.objects.all())
    rpos = job_rpos(jobs)
    # Tightest RPO first (no RPO last): each VM's covering jobs come out in this order.
    jobs.sort(key=lambda job: (rpos[job.pk] is None, rpos[job.pk] or timedelta(0), job.name))
    covering = covering_jobs(rows, jobs)
    result = {}
    for row in rows:
        jobs_of_vm = covering[row["id"]]
        rpo = rpos[jobs_of_vm[0].pk] if jobs_of_vm else None
        last = last_good.get(row["uuid"])
        deleted = row["deleted"]
        result[row["id"]] = VmProtection(
            vm_id=row["id"], vm_uuid=row["uuid"], vm_name=row["name"], pool_id=row["pool_id"], deleted=deleted,
            status=status_for(deleted=deleted, jobs=jobs_of_vm, rpo=rpo, last_good_at=last, now=now),
            jobs=jobs_of_vm, rpo=rpo, last_good_at=last, age=now - last if last else None,
        )
    return result


def vm_protection(vm, *, now=None) -> VmProtection:
    """One VM's protection (the VM page)."""
    return protection_map(VM.objects.filter(pk=vm.pk), now=now)[vm.pk]


def vm_ids_with(protection, *, status=None, job_id=None):
    """VM ids of a protection map with this status (or one of these statuses) and/or covered
    by this job (list filters)."""
    statuses = (status,) if isinstance(status, str) else status
    return [vm_id for vm_id, item in protection.items()
            if (not statuses or item.status in statuses)
            and (not job_id or any(job.pk == job_id for job in item.jobs))]


def counts_per_pool(protection):
    """{pool id: {"protected": n, "at_risk": n, "unprotected": n}} over live VMs."""
    counts = {}
    for item in protection.values():
        if item.deleted:
            continue
        bucket = counts.setdefault(item.pool_id, {"protected": 0, "at_risk": 0, "unprotected": 0})
        key = "protected" if item.status == Protection.MET else "at_risk" if item.at_risk else "unprotected"
        bucket[key] += 1
    return counts
