"""An estate the size of a large site, for tests/backups/jobs/test_scale.py and
bench/jobs_scale.py: 2,000 VMs in 4 pools, 200 jobs (rules and chosen VMs, exclusions,
schedules), 100,000 past runs with one VM backup each, and restore points for most VMs.
Rows are bulk-created as the inventory sync and the backups would have written them."""
import random
from datetime import timedelta

from django.utils import timezone

from backups.choices import BackupKind, BackupMethod, BackupPhase, RunStatus, Trigger, VerifyState
from backups.jobs.choices import SelectionMode
from backups.jobs.schedules import sync_schedule
from backups.models import BackupJob, BackupRun, JobSchedule, RestorePoint, VmBackup
from backups.stores import create_store
from xenpools.choices import PowerState
from xenpools.models import VM, Pool

ROLES = ["web", "db", "app", "cache", "mail"]
ENVS = ["prod", "test", "dev"]
TIERS = ["gold", "silver", "bronze"]
CRONS = ["0 22 * * *", "30 1 * * *", "0 */6 * * *", "0 3 * * 6", "15 * * * *"]
BATCH = 5000


def build_estate(store_dir, *, vms=2000, jobs=200, runs=100_000, seed=7):
    rng = random.Random(seed)
    now = timezone.now()
    stores = [create_store(name=f"store-{i}", path=f"{store_dir}/store-{i}", encrypted=False) for i in range(2)]
    pools = [Pool.objects.create(name=f"pool-{i}", address=f"pool-{i}.example.test", uuid=f"pool-{i}")
             for i in range(4)]

    rows = []
    for i in range(vms):
        # Mail VMs carry no tag a rule asks for: only chosen by hand, most are in no job.
        tags = ["unmanaged"] if i % 5 == 4 else [ENVS[i % 3], TIERS[(i // 3) % 3]]
        rows.append(VM(pool=pools[i % 4], uuid=f"00000000-0000-4000-9000-{i:012d}", ref=f"OpaqueRef:vm-{i}",
                       name=f"{ROLES[i % 5]}-{i:04d}", tags=tags, tags_index=VM.index_tags(tags),
                       power_state=PowerState.RUNNING if i % 5 else PowerState.HALTED,
                       removed_at=now - timedelta(days=3) if i % 40 == 39 else None))
    all_vms = VM.objects.bulk_create(rows, batch_size=BATCH)
    live = [vm for vm in all_vms if vm.removed_at is None]

    job_rows = []
    for i in range(jobs):
        explicit = i % 5 in (1, 3)
        job_rows.append(BackupJob(
            name=f"job-{i:03d}", store=stores[i % 2],
            selection=SelectionMode.EXPLICIT if explicit else SelectionMode.RULE,
            rule_tags=[] if explicit else [[ENVS[i % 3]], [TIERS[i % 3]], []][i % 3],
            rule_name_pattern="" if explicit or (i % 3 != 2 and i % 4) else f"{ROLES[i % 4]}-*",
            rule_power_states=[PowerState.RUNNING] if not explicit and i % 7 == 0 else [],
            rpo_hours=[24, 12, None, 48][i % 4], enabled=i % 50 != 49))
    created_jobs = BackupJob.objects.bulk_create(job_rows)
    memberships, exclusions, pool_rules = [], [], []
    for i, job in enumerate(created_jobs):
        if job.selection == SelectionMode.EXPLICIT:
            memberships += [BackupJob.vms.through(backupjob_id=job.pk, vm_id=vm.pk) for vm in rng.sample(live, 15)]
        else:
            exclusions += [BackupJob.excluded_vms.through(backupjob_id=job.pk, vm_id=vm.pk) for vm in rng.sample(live, 3)]
            if i % 2:
                pool_rules.append(BackupJob.rule_pools.through(backupjob_id=job.pk, pool_id=pools[i % 4].pk))
    BackupJob.vms.through.objects.bulk_create(memberships, batch_size=BATCH)
    BackupJob.excluded_vms.through.objects.bulk_create(exclusions, batch_size=BATCH)
    BackupJob.rule_pools.through.objects.bulk_create(pool_rules, batch_size=BATCH)
    schedules = JobSchedule.objects.bulk_create(
        JobSchedule(job=job, cron=CRONS[i % len(CRONS)]) for i, job in enumerate(created_jobs))
    for schedule in schedules:
        sync_schedule(schedule)

    # 100,000 runs over the last year, newest last; about 4 % failed.
    run_rows, starts = [], []
    span = timedelta(days=365).total_seconds()
    for i in range(runs):
        start = now - timedelta(seconds=span * (runs - i) / runs)
        status = RunStatus.FAILED if rng.random() < 0.04 else RunStatus.SUCCESS
        starts.append(start)
        run_rows.append(BackupRun(trigger=Trigger.SCHEDULE, job_id=created_jobs[i % jobs].pk, status=status,
                                  created_at=start, started_at=start, finished_at=start + timedelta(minutes=4)))
    created_runs = BackupRun.objects.bulk_create(run_rows, batch_size=BATCH)
    backup_rows = []
    for i, run in enumerate(created_runs):
        vm = live[i % len(live)]
        ok = run.status == RunStatus.SUCCESS
        backup_rows.append(VmBackup(
            run_id=run.pk, vm_id=vm.pk, pool_id=vm.pool_id, vm_uuid=vm.uuid, vm_name=vm.name,
            store_id=stores[i % 2].pk, method=BackupMethod.NORMAL, kind=BackupKind.INCREMENTAL if i % 7 else BackupKind.FULL,
            status=run.status, phase=BackupPhase.DONE, total_bytes=20 << 30,
            bytes_read=2 << 30, bytes_processed=20 << 30, bytes_new=1 << 30, bytes_stored=512 << 20,
            error="" if ok else "the pool refused the snapshot", created_at=starts[i], started_at=starts[i],
            finished_at=starts[i] + timedelta(minutes=4)))
    VmBackup.objects.bulk_create(backup_rows, batch_size=BATCH)

    # Restore points: three per VM for 9 VMs in 10 (ages spread so that RPOs are met or missed),
    # the deleted VMs' last points among them; one point in 20 is damaged.
    points = []
    for n, vm in enumerate(all_vms):
        if n % 10 == 9:
            continue
        for k in range(3):
            taken = now - timedelta(hours=rng.uniform(1, 30) + 24 * k)
            points.append(RestorePoint(
                store=stores[n % 2], point_id=f"{vm.uuid}/{k}", vm_uuid=vm.uuid, vm_name=vm.name,
                pool_uuid=f"pool-{n % 4}", taken_at=taken, method=BackupMethod.NORMAL,
                kind=BackupKind.FULL if k == 2 else BackupKind.INCREMENTAL, virtual_size=20 << 30,
                bytes_stored=512 << 20, verify_state=VerifyState.DAMAGED if rng.random() < 0.05 else VerifyState.OK))
    RestorePoint.objects.bulk_create(points, batch_size=BATCH)
    return {"vms": len(all_vms), "jobs": len(created_jobs), "runs": len(created_runs), "points": len(points)}
