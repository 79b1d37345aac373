from django.core.management.base import BaseCommand, CommandError

from backups.cli import find_store, find_vm
from backups.models import ReplicationPolicy
from backups.restore.replication import remove_policy, replication_status, save_policy
from sesamweb.audit.log import acting_as
from xenpools.models import Pool, StorageRepository


class Command(BaseCommand):
    help = "Replication policies: keep halted replicas of VMs on another pool, refreshed after every backup."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="create a policy")
        add.add_argument("name")
        add.add_argument("--pool", required=True, help="target pool name")
        add.add_argument("--sr", help="target SR name (default: the pool's default SR)")
        add.add_argument("--vm", action="append", default=[], help="VM uuid or name (repeatable)")
        add.add_argument("--store", help="replicate every VM backed up to this data store")
        add.add_argument("--keep", type=int, default=1, help="replicas kept per VM")
        add.add_argument("--suffix", default=" (replica)")
        add.add_argument("--network", action="append", default=[], metavar="SOURCE=TARGET",
                         help="map a source network name to a target network name (repeatable)")
        actions.add_parser("list", help="policies and the state of their latest replicas")
        remove = actions.add_parser("remove", help="delete a policy (its replicas stay)")
        remove.add_argument("name")

    def handle(self, *args, action, **options):
        with acting_as(None, source="cli:replication"):
            getattr(self, f"_{action}")(**options)

    def _add(self, name, pool, sr, vm, store, keep, suffix, network, **options):
        if ReplicationPolicy.objects.filter(name=name).exists():
            raise CommandError(f"a replication policy named {name!r} exists already")
        if not vm and not store:
            raise CommandError("name the VMs to replicate (--vm) or a data store whose VMs are replicated (--store)")
        if keep < 1:
            raise CommandError("--keep must be at least 1")
        try:
            target = Pool.objects.get(name=pool)
        except Pool.DoesNotExist:
            raise CommandError(f"no pool named {pool!r}") from None
        target_sr = None
        if sr:
            target_sr = StorageRepository.objects.filter(pool=target, name=sr).first()
            if target_sr is None:
                raise CommandError(f"pool {target} has no SR named {sr!r}")
        network_map = {}
        for pair in network:
            source, _, destination = pair.partition("=")
            if not source or not destination:
                raise CommandError(f"--network takes SOURCE=TARGET, not {pair!r}")
            network_map[source] = destination
        save_policy(ReplicationPolicy(
            name=name, target_pool=target, target_sr=target_sr, keep=keep, suffix=suffix,
            vm_uuids=[find_vm(v).uuid for v in vm], source_store=find_store(store) if store else None,
            network_map=network_map,
        ))
        self.stdout.write(self.style.SUCCESS(
            f"Replication policy {name}: replicas on {target} after each successful backup, keeping {keep}."))

    def _list(self, **options):
        policies = list(ReplicationPolicy.objects.select_related("target_pool", "source_store"))
        if not policies:
            self.stdout.write("No replication policies.")
            return
        for policy in policies:
            scope = ", ".join(filter(None, [f"{len(policy.vm_uuids)} VM(s)" if policy.vm_uuids else "",
                                            f"all VMs of store {policy.source_store}" if policy.source_store else ""]))
            state = "enabled" if policy.enabled else "disabled"
            self.stdout.write(f"{policy.name}: {scope} -> {policy.target_pool}, keep {policy.keep} ({state})")
        for row in replication_status():
            run = row["last_run"]
            self.stdout.write(f"  {row['vm_name']} [{row['policy']}]: {run.get_status_display()}"
                              + (f", latest replica {row['last_replica_uuid']}" if row["last_replica_uuid"] else "")
                              + (f": {run.error}" if run.error else ""))

    def _remove(self, name, **options):
        policy = ReplicationPolicy.objects.filter(name=name).first()
        if policy is None:
            raise CommandError(f"no replication policy named {name!r}")
        remove_policy(policy)
        self.stdout.write(f"Replication policy {name} deleted (its replicas stay on the pool).")
