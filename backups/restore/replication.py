"""Replication: each new restore point of a chosen VM becomes a halted replica on another pool.

After a successful backup, replicate_after_backup() queues a restore of the new point for
every enabled policy that covers the VM. Replicas are tagged in other_config (source VM,
policy, point time); once a new replica is in place, prune_replicas() deletes the oldest
beyond the policy's `keep`, and only VMs carrying the policy's tag.
"""
import logging

import XenAPI
from django.utils import timezone

from xenpools.models import Network

from ..choices import RunStatus, Trigger
from ..formats.xva import NULL_REF
from ..models_restore import ReplicationPolicy, RestoreKind, RestoreRun
from . import metadata
from .plan import Identity, RestorePlanError, StartMode, default_plan, describe_point, request_restore

log = logging.getLogger(__name__)


def policies_for(vm_uuid, store_id):
    return [p for p in ReplicationPolicy.objects.filter(enabled=True).select_related("target_pool", "target_sr")
            if p.applies_to(vm_uuid, store_id)]


def replica_name(policy, vm_name, taken_at):
    return f"{vm_name}{policy.suffix} {timezone.localtime(taken_at):%Y-%m-%d %H:%M:%S}"


def replica_plan(policy, point):
    plan = default_plan(point, policy.target_pool)
    if policy.target_sr is not None:
        plan.sr_by_disk = {key: policy.target_sr for key in plan.sr_by_disk}
    networks = {n.name: n for n in Network.objects.filter(pool=policy.target_pool)}
    for vif in describe_point(point).vifs:
        wanted = policy.network_map.get(vif.network_name)
        if wanted:
            plan.network_by_vif[vif.device] = networks.get(wanted)
    plan.identity, plan.start_mode, plan.replace_original = Identity.NEW, StartMode.HALTED, False
    plan.name = replica_name(policy, point.vm_name, point.taken_at)
    return plan


def replicate_after_backup(vm_backup, warn):
    """Queue a replica of the backup's new restore point for each policy covering the VM.
    Never raises: a problem becomes a warning on the backup (`warn(text)`)."""
    point = vm_backup.restore_point
    if point is None:
        return []
    runs = []
    try:
        for policy in policies_for(vm_backup.vm_uuid, vm_backup.store_id):
            try:
                runs.append(request_restore(replica_plan(policy, point), None, trigger=Trigger.SCHEDULE,
                                            replication_policy=policy))
            except RestorePlanError as exc:
                warn(f"replication {policy.name}: the replica cannot be made: {exc}")
    except Exception as exc:  # noqa: BLE001 - replication must never fail the backup
        log.exception("replication after backup %s failed", vm_backup.pk)
        warn(f"replication could not be queued: {exc.__class__.__name__}: {exc}")
    return runs


def prune_replicas(conn, policy, source_vm_uuid, warn):
    """Delete this policy's replicas of the VM beyond the newest `keep` (running ones are left:
    someone may have failed over to them). Returns the uuids deleted."""
    xenapi = conn.xenapi
    replicas = []
    for ref, record in xenapi.VM.get_all_records().items():
        other = record["other_config"]
        if (other.get(metadata.REPLICA_OF) == source_vm_uuid and other.get(metadata.REPLICA_POLICY) == str(policy.pk)
                and not record["is_a_snapshot"] and metadata.RESTORE_TAG not in other):
            replicas.append((other.get(metadata.REPLICA_TIME, ""), ref, record))
    replicas.sort(key=lambda item: item[0], reverse=True)
    deleted = []
    for _, ref, record in replicas[policy.keep:]:
        if record["power_state"] != "Halted":
            warn(f"replica {record['name_label']} is {record['power_state'].lower()}: kept")
            continue
        vdis = [xenapi.VBD.get_VDI(vbd) for vbd in record["VBDs"] if xenapi.VBD.get_type(vbd) == "Disk"]
        try:
            xenapi.VM.destroy(ref)
            for vdi in vdis:
                if vdi != NULL_REF:
                    xenapi.VDI.destroy(vdi)
        except XenAPI.Failure as exc:
            warn(f"could not delete the old replica {record['name_label']}: {' '.join(map(str, exc.details))}")
            continue
        deleted.append(record["uuid"])
    return deleted


def replication_status():
    """Per policy and VM: the last replica run, its state, and the last good replica and its age
    (for the dashboard)."""
    now = timezone.now()
    rows = []
    replica_runs = RestoreRun.objects.filter(kind=RestoreKind.REPLICA).order_by("-created_at")
    for policy in ReplicationPolicy.objects.select_related("target_pool"):
        last_run, last_good = {}, {}
        for run in replica_runs.filter(replication_policy=policy):
            last_run.setdefault(run.source_vm_uuid, run)
            if run.status in (RunStatus.SUCCESS, RunStatus.WARNING):
                last_good.setdefault(run.source_vm_uuid, run)
        for vm_uuid, run in sorted(last_run.items(), key=lambda item: item[1].source_vm_name):
            good = last_good.get(vm_uuid)
            rows.append({
                "policy": policy, "vm_uuid": vm_uuid, "vm_name": run.source_vm_name,
                "target_pool": policy.target_pool, "last_run": run, "state": run.status,
                "last_replica_uuid": good.restored_vm_uuid if good else "",
                "last_replica_at": good.finished_at if good else None,
                "age_seconds": (now - good.finished_at).total_seconds() if good and good.finished_at else None,
            })
    return rows


# -- policies, as the pages (and the CLI) change them ----------------------------------------
def save_policy(policy, *, user=None):
    """Create or change a policy (already validated, e.g. by ReplicationPolicyForm); audited."""
    from django.db import transaction

    from sesamweb.audit.choices import AuditAction
    from sesamweb.audit.log import model_snapshot, record_event

    created = policy.pk is None
    before = None if created else model_snapshot(ReplicationPolicy.objects.get(pk=policy.pk))
    with transaction.atomic():
        policy.save()
        record_event(AuditAction.CREATE if created else AuditAction.UPDATE, target=policy, actor=user,
                     before=before, after=model_snapshot(policy),
                     message=f"replication policy {policy.name} {'created' if created else 'changed'}")
    return policy


def remove_policy(policy, *, user=None):
    """Delete a policy; the replicas it made stay on the pool. Audited."""
    from django.db import transaction

    from sesamweb.audit.choices import AuditAction
    from sesamweb.audit.log import model_snapshot, record_event

    before, name = model_snapshot(policy), policy.name
    with transaction.atomic():
        policy.delete()
        record_event(AuditAction.DELETE, target_type="replication policy", target_repr=name, before=before,
                     actor=user, message=f"replication policy {name} deleted; its replicas stay on the pool")


def policy_results():
    """{policy id: {"runs": [last replica run per VM...], "failed": n, "last": newest run}} for the list page."""
    results = {}
    for row in replication_status():
        entry = results.setdefault(row["policy"].pk, {"rows": [], "failed": 0, "last": None})
        entry["rows"].append(row)
        run = row["last_run"]
        entry["failed"] += run.status == RunStatus.FAILED
        if entry["last"] is None or run.created_at > entry["last"].created_at:
            entry["last"] = run
    return results
