"""Mirror a pool's inventory into the database.

`sync_pool(pool)` reads every class with get_all_records over one session, then writes
everything in ONE transaction: a pool that goes away while being read changes nothing but its
health. The event follower (xenpools.follower) keeps the same records in memory and calls
`InventoryWriter.apply(records, changed=...)` for the objects an event touched.

Writes are bounded: one query per class to read the existing rows, bulk_create and
bulk_update for the rest. VMs and VDIs that vanish are marked removed (removed_at), never
deleted, so backups of a deleted VM stay findable; hosts, SRs, networks, VBDs and VIFs that
vanish are deleted.
"""
from __future__ import annotations

import logging
import xmlrpc.client
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone

import XenAPI
from django.db import transaction
from django.utils import timezone

from .choices import PoolHealth
from .connection import (
    TRANSPORT_ERRORS, PoolAuthenticationFailed, PoolConnectionLost, PoolCertificateError, PoolConnection, PoolError, PoolUnreachable,
)
from .models import VDI, VIF, VM, Host, Network, Pool, StorageRepository, VirtualDisk

logger = logging.getLogger(__name__)

# XenAPI classes mirrored, in the order their rows must be written (parents first).
CLASSES = ["pool", "host", "host_metrics", "network", "SR", "PBD", "VDI", "VM_guest_metrics", "VM", "VBD", "VIF"]
NULL_REF = "OpaqueRef:NULL"
# A change to one of these fields is published to the VM list.
VISIBLE_VM_FIELDS = {"name", "power_state", "host_id", "removed_at", "os_name", "tags", "is_windows"}


def health_for(error: Exception) -> str:
    if isinstance(error, PoolUnreachable):
        return PoolHealth.UNREACHABLE
    if isinstance(error, PoolAuthenticationFailed):
        return PoolHealth.AUTH_FAILED
    if isinstance(error, PoolCertificateError):
        return PoolHealth.CERTIFICATE
    return PoolHealth.ERROR


def fetch_records(connection: PoolConnection, on_read=None) -> dict:
    """{class: {ref: record}} for every mirrored class; `on_read(cls, records)` is told after
    each class (progress).

    Reconnects once (which fails over) when the connection breaks or the master changed
    under us (HOST_IS_SLAVE, or the client giving up on SESSION_INVALID)."""
    for attempt in (1, 2):
        try:
            records = {}
            for cls in CLASSES:
                records[cls] = getattr(connection.xenapi, cls).get_all_records()
                if on_read is not None:
                    on_read(cls, records[cls])
            return records
        except (PoolConnectionLost, *TRANSPORT_ERRORS, xmlrpc.client.Fault, XenAPI.Failure) as exc:
            master_moved = not isinstance(exc, XenAPI.Failure) or exc.details[:1] == ["HOST_IS_SLAVE"]
            if attempt == 2 or not master_moved:
                if isinstance(exc, XenAPI.Failure):
                    raise PoolError(f"{connection.master_address} refused to list the inventory: {' '.join(exc.details)}") from exc
                raise PoolUnreachable(f"lost the connection to {connection.master_address} while reading the inventory: {exc}") from exc
            logger.info("pool %s: %s; reconnecting", connection.address.host, exc)
            connection.reconnect()


@dataclass
class SyncResult:
    vm_changes: list = field(default_factory=list)      # [VM] whose visible state changed
    pool_changed: bool = False
    counts: dict = field(default_factory=dict)


def sync_pool(pool: Pool, progress=None) -> SyncResult:
    """Full sync of one pool. Raises PoolError after marking the pool unhealthy.

    `progress` (optional) hears `connected()`, `read(cls, records)` per class and
    `writing()`: xenpools.sync.SyncProgress shows them live."""
    try:
        with PoolConnection.open(pool) as connection:
            if progress is not None:
                progress.connected()
            records = fetch_records(connection, on_read=progress.read if progress is not None else None)
            pins = connection.pin_member_certificates(records["host"])
    except PoolError as exc:
        pool.mark_unhealthy(exc, health_for(exc))
        raise
    if progress is not None:
        progress.writing()
    with transaction.atomic():
        if pins:
            pool.fingerprints = {**pool.fingerprints, **pins}
            pool.save(update_fields=["fingerprints"])
        result = InventoryWriter(pool).apply(records)
        pool.last_sync = timezone.now()
        pool.save(update_fields=["last_sync"])
    pool.mark_healthy()
    return result


# --- record -> row fields ------------------------------------------------------------------------
def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _datetime(value):
    text = getattr(value, "value", value)
    if not text or str(text).startswith("1970"):
        return None
    text = str(text).rstrip("Z").replace("-", "")
    try:
        return datetime.strptime(text, "%Y%m%dT%H:%M:%S").replace(tzinfo=dt_timezone.utc)
    except ValueError:
        return None


def is_mirrored_vm(record: dict) -> bool:
    # Snapshots are templates too in xapi; keep them, drop real templates and dom0.
    if record.get("is_control_domain"):
        return False
    return record.get("is_a_snapshot") or not record.get("is_a_template")


def is_mirrored_vdi(record: dict) -> bool:
    # LVM SRs list the hidden base copies of snapshot chains (managed=false, "base copy"):
    # storage-manager internals, not disks anyone made.
    return record.get("managed", True) is not False


def guest_os(vm: dict, guest_metrics: dict) -> tuple[str, bool]:
    metrics = guest_metrics.get(vm.get("guest_metrics", NULL_REF), {})
    os_version = metrics.get("os_version") or {}
    name = os_version.get("name") or os_version.get("distro") or ""
    name = name.split("|")[0]      # Windows puts "name|path|partition" in name
    text = f"{name} {os_version.get('distro', '')}".lower()
    is_windows = "windows" in text or (not name and vm.get("platform", {}).get("viridian") == "true")
    return name, is_windows


class InventoryWriter:
    """Applies XenAPI records to one pool's rows."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self.now = timezone.now()

    def apply(self, records: dict, changed: dict | None = None) -> SyncResult:
        """Write `records` ({class: {ref: record}}). `changed` ({class: set of refs}) limits the
        write to those objects (incremental); None means a full sync that also handles
        vanished objects."""
        self.records = records
        self.full = changed is None
        self.changed = self._expand(changed) if changed is not None else None
        result = SyncResult()
        result.pool_changed = self._write_pool()
        hosts = self._upsert(Host, "host", self._host_fields, result)
        networks = self._upsert(Network, "network", self._network_fields, result)
        srs = self._upsert(StorageRepository, "SR", self._sr_fields, result)
        self.refs = {"host": hosts, "network": networks, "SR": srs}
        self._write_sr_hosts(srs, hosts)
        self.refs["VDI"] = self._upsert(VDI, "VDI", self._vdi_fields, result, removable=True, keep=is_mirrored_vdi)
        self._link_snapshots(VDI, "VDI", self.refs["VDI"])
        self.refs["VM"] = self._upsert(VM, "VM", self._vm_fields, result, removable=True, keep=is_mirrored_vm)
        self._link_snapshots(VM, "VM", self.refs["VM"])
        self._upsert(VirtualDisk, "VBD", self._vbd_fields, result, keep=lambda r: r.get("VM") in self.refs["VM"])
        self._upsert(VIF, "VIF", self._vif_fields, result, keep=lambda r: r.get("VM") in self.refs["VM"])
        result.pool_changed = result.pool_changed or bool(result.counts.get("host") or result.counts.get("SR"))
        return result

    def _expand(self, changed):
        """A host_metrics, guest_metrics or PBD change shows on its host, VM or SR row."""
        changed = {cls: set(refs) for cls, refs in changed.items()}
        for metrics_ref in changed.get("host_metrics", ()):
            changed.setdefault("host", set()).update(
                ref for ref, h in self.records["host"].items() if h.get("metrics") == metrics_ref)
        for metrics_ref in changed.get("VM_guest_metrics", ()):
            changed.setdefault("VM", set()).update(
                ref for ref, v in self.records["VM"].items() if v.get("guest_metrics") == metrics_ref)
        for pbd_ref in changed.get("PBD", ()):
            pbd = self.records["PBD"].get(pbd_ref)
            if pbd:
                changed.setdefault("SR", set()).add(pbd["SR"])
        return changed

    # pool ------------------------------------------------------------------------------------
    def _write_pool(self):
        if not self.full and not self.changed.get("pool") and not self.changed.get("host"):
            return False
        pool_record = next(iter(self.records["pool"].values()), None)
        if pool_record is None:
            return False
        hosts = self.records["host"]
        master = hosts.get(pool_record["master"], {})
        version = master.get("software_version", {})
        values = {
            "uuid": pool_record["uuid"],
            "pool_label": pool_record.get("name_label", ""),
            "ha_enabled": bool(pool_record.get("ha_enabled")),
            "product_brand": version.get("product_brand", self.pool.product_brand),
            "product_version": version.get("product_version", self.pool.product_version),
            "master_address": master.get("address") or self.pool.master_address,
            "member_addresses": sorted(h["address"] for h in hosts.values() if h.get("address")),
        }
        changed = [name for name, value in values.items() if getattr(self.pool, name) != value]
        for name in changed:
            setattr(self.pool, name, values[name])
        if changed:
            self.pool.save(update_fields=changed)
        return bool(changed)

    # generic upsert ------------------------------------------------------------------------------
    def _upsert(self, model, cls, to_fields, result, *, removable=False, keep=lambda record: True):
        """Create or update rows of one class; returns {ref: pk} of all current rows."""
        records = self.records.get(cls, {})
        if self.full:
            wanted = {ref: rec for ref, rec in records.items() if keep(rec)}
            existing = {row.uuid: row for row in model.objects.filter(pool=self.pool)}
        else:
            refs = self.changed.get(cls, set())
            wanted = {ref: records[ref] for ref in refs if ref in records and keep(records[ref])}
            existing = {row.uuid: row for row in model.objects.filter(pool=self.pool, ref__in=refs)} if refs else {}
            existing.update({row.uuid: row for row in model.objects.filter(
                pool=self.pool, uuid__in=[r["uuid"] for r in wanted.values()])} if wanted else {})
        creates, updates, touched_fields, visible = [], [], set(), []
        seen = set()
        for ref, record in wanted.items():
            values = to_fields(ref, record)
            values["ref"] = ref
            if removable:
                values["removed_at"] = None
            seen.add(record["uuid"])
            row = existing.get(record["uuid"])
            if row is None:
                row = model(pool=self.pool, uuid=record["uuid"], **values)
                creates.append(row)
                continue
            diff = [name for name, value in values.items() if getattr(row, name) != value]
            if diff:
                for name in diff:
                    setattr(row, name, values[name])
                touched_fields.update(diff)
                updates.append(row)
                if VISIBLE_VM_FIELDS.intersection(diff):
                    visible.append(row)
        vanished = [row for uuid, row in existing.items() if uuid not in seen]
        model.objects.bulk_create(creates, batch_size=500)
        if updates:
            model.objects.bulk_update(updates, sorted(touched_fields), batch_size=500)
        if vanished:
            if removable:
                gone = [row for row in vanished if row.removed_at is None]
                for row in gone:
                    row.removed_at = self.now
                model.objects.bulk_update(gone, ["removed_at"], batch_size=500)
                visible.extend(gone)
            else:
                model.objects.filter(pk__in=[row.pk for row in vanished]).delete()
        if creates or updates or vanished:
            result.counts[cls] = len(creates) + len(updates) + len(vanished)
        if model is VM:
            result.vm_changes.extend(creates + visible)
            # last_seen in one statement instead of rewriting every row.
            if self.full:
                model.objects.filter(pool=self.pool, removed_at__isnull=True).update(last_seen=self.now)
            elif seen:
                model.objects.filter(pool=self.pool, uuid__in=seen).update(last_seen=self.now)
        current = model.objects.filter(pool=self.pool)
        if removable:
            current = current.filter(removed_at__isnull=True)
        return dict(current.values_list("ref", "pk"))

    def _link_snapshots(self, model, cls, pks):
        """Set snapshot_of once every row of the class exists (a snapshot may come first)."""
        records = self.records.get(cls, {})
        refs = records.keys() if self.full else self.changed.get(cls, set())
        wanted = {pks[ref]: pks.get(records[ref].get("snapshot_of")) for ref in refs if ref in pks and ref in records}
        rows = [row for row in model.objects.filter(pk__in=list(wanted)) if row.snapshot_of_id != wanted[row.pk]]
        for row in rows:
            row.snapshot_of_id = wanted[row.pk]
        if rows:
            model.objects.bulk_update(rows, ["snapshot_of"], batch_size=500)

    def _write_sr_hosts(self, srs, hosts):
        refs = self.records["SR"].keys() if self.full else self.changed.get("SR", set())
        through = StorageRepository.hosts.through
        sr_pks = [srs[ref] for ref in refs if ref in srs]
        if not sr_pks:
            return
        links = set()
        for pbd in self.records.get("PBD", {}).values():
            if pbd.get("SR") in refs and pbd.get("currently_attached") and pbd.get("host") in hosts and pbd["SR"] in srs:
                links.add((srs[pbd["SR"]], hosts[pbd["host"]]))
        through.objects.filter(storagerepository_id__in=sr_pks).delete()
        through.objects.bulk_create([through(storagerepository_id=s, host_id=h) for s, h in links])

    # per-class fields ---------------------------------------------------------------------------
    def _host_fields(self, ref, host):
        metrics = self.records.get("host_metrics", {}).get(host.get("metrics"), {})
        pool_record = next(iter(self.records["pool"].values()), {})
        return {
            "name": host.get("name_label", ""),
            "address": host.get("address", ""),
            "enabled": bool(host.get("enabled")),
            "live": bool(metrics.get("live", True)),
            "is_master": ref == pool_record.get("master"),
            "memory_total": _int(metrics.get("memory_total")),
            "memory_free": _int(metrics.get("memory_free")),
            "product_version": host.get("software_version", {}).get("product_version", ""),
        }

    def _network_fields(self, ref, network):
        return {
            "name": network.get("name_label", ""),
            "bridge": network.get("bridge", ""),
            "mtu": _int(network.get("MTU"), 1500),
            "purpose": sorted(network.get("purpose") or []),
        }

    def _sr_fields(self, ref, sr):
        return {
            "name": sr.get("name_label", ""),
            "type": sr.get("type", ""),
            "content_type": sr.get("content_type", ""),
            "shared": bool(sr.get("shared")),
            "physical_size": _int(sr.get("physical_size")),
            "physical_utilisation": _int(sr.get("physical_utilisation")),
            "virtual_allocation": _int(sr.get("virtual_allocation")),
        }

    def _vdi_fields(self, ref, vdi):
        return {
            "name": vdi.get("name_label", ""),
            "sr_id": self.refs["SR"].get(vdi.get("SR")),
            "virtual_size": _int(vdi.get("virtual_size")),
            "physical_utilisation": _int(vdi.get("physical_utilisation")),
            "type": vdi.get("type", ""),
            "cbt_enabled": bool(vdi.get("cbt_enabled")),
            "is_snapshot": bool(vdi.get("is_a_snapshot")),
        }

    def _vm_fields(self, ref, vm):
        os_name, is_windows = guest_os(vm, self.records.get("VM_guest_metrics", {}))
        tags = list(vm.get("tags") or [])
        return {
            "name": vm.get("name_label", ""),
            "description": vm.get("name_description", ""),
            "power_state": vm.get("power_state", "Halted"),
            "host_id": self.refs["host"].get(vm.get("resident_on")),
            "os_name": os_name,
            "is_windows": is_windows,
            "tags": tags,
            "tags_index": VM.index_tags(tags),
            "memory": _int(vm.get("memory_static_max")),
            "vcpus": _int(vm.get("VCPUs_max"), 1) or 1,
            "is_snapshot": bool(vm.get("is_a_snapshot")),
            "snapshot_time": _datetime(vm.get("snapshot_time")) if vm.get("is_a_snapshot") else None,
            "ha_restart_priority": vm.get("ha_restart_priority", "") or "",
        }

    def _vbd_fields(self, ref, vbd):
        return {
            "vm_id": self.refs["VM"][vbd["VM"]],
            "vdi_id": self.refs["VDI"].get(vbd.get("VDI")),
            "userdevice": vbd.get("userdevice", ""),
            "type": vbd.get("type", "Disk"),
            "mode": vbd.get("mode", "RW"),
            "bootable": bool(vbd.get("bootable")),
        }

    def _vif_fields(self, ref, vif):
        return {
            "vm_id": self.refs["VM"][vif["VM"]],
            "network_id": self.refs["network"].get(vif.get("network")),
            "device": vif.get("device", ""),
            "mac": vif.get("MAC", ""),
            "mtu": _int(vif.get("MTU"), 1500),
        }
