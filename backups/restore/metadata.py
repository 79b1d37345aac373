"""The VM description a restore sends: ova.xml for PUT /import, or the records for VM.create.

Both start from the ova.xml kept in the restore point and apply the plan: name, identity
(the original VM's UUID and MACs, or new ones), networks, VIFs left out, the memory image kept
or dropped, and a tag naming the restore run on the VM and every VDI, so that whatever a
failed or killed restore created can be found and removed.
"""
from __future__ import annotations

from ..formats.xva import NULL_REF, OvaMetadata, dump_ova_xml, parse_ova_xml, rewrite_ova_xml

RESTORE_TAG = "sesamweb_restore"            # other_config: the RestoreRun that is creating this object
RESTORED_FROM = "sesamweb_restored_from"    # other_config on the VM: "<store>:<restore point id>"
REPLICA_OF = "sesamweb_replica_of"          # other_config on replicas: the source VM uuid
REPLICA_POLICY = "sesamweb_replica_policy"  # other_config on replicas: the ReplicationPolicy id
REPLICA_TIME = "sesamweb_replica_time"      # other_config on replicas: the restore point's time (ISO)


def disk_key_of(userdevice: str) -> str:
    return f"vbd{userdevice}" if userdevice != "" else "suspend"


def xapi_build_of(version: dict) -> tuple[int, int] | None:
    """The xapi build an ova.xml header names (version.xapi_major/minor, e.g. 1.249 or 24.39)."""
    try:
        return int(version["xapi_major"]), int(version["xapi_minor"])
    except (KeyError, TypeError, ValueError):
        return None


def import_ova_xml(ova_xml: bytes, *, plan, vm_uuid: str, run_id: int, with_memory: bool,
                   network_map: dict, drop_vifs: list[str], extra_other_config: dict,
                   target_xapi: tuple[int, int] | None = None) -> tuple[bytes, dict]:
    """ova.xml for PUT /import; returns it with {disk key: ova ref} of the disks to stream.

    xapi refuses an XVA whose header names a newer xapi build than its own, whatever the
    records hold (importexport.ml assert_compatible, IMPORT_INCOMPATIBLE_VERSION): for a pool
    with an older build (``target_xapi``) the header names that build; record fields the
    older xapi does not know are ignored by its decoder."""
    keep = plan.identity == "keep"
    rewritten = rewrite_ova_xml(ova_xml, new_name=plan.name, keep_identity=keep,
                                network_map=network_map or None, drop_vifs=drop_vifs)
    meta = parse_ova_xml(rewritten)
    vm = meta.vm
    # A backup exports a snapshot: present it as the VM it was taken of.
    vm.update(is_a_snapshot=False, snapshot_of=NULL_REF, is_a_template=False)
    if keep:
        vm["uuid"] = vm_uuid
    other = vm.setdefault("other_config", {})
    other.update({RESTORE_TAG: str(run_id), **extra_other_config})
    suspend_ref = vm.get("suspend_VDI", NULL_REF)
    if not with_memory and suspend_ref != NULL_REF:
        vm.update(power_state="Halted", suspend_VDI=NULL_REF)
        meta.objects = [o for o in meta.objects if o["id"] != suspend_ref]
    elif not with_memory:
        vm["power_state"] = "Halted"
    for _, vdi in meta.of_class("VDI"):
        vdi.setdefault("other_config", {})[RESTORE_TAG] = str(run_id)
    version = dict(meta.version)
    source = xapi_build_of(version)
    if target_xapi is not None and source is not None and source > tuple(target_xapi):
        version.update(xapi_major=int(target_xapi[0]), xapi_minor=int(target_xapi[1]))
    meta = OvaMetadata(version=version, objects=meta.objects)
    refs = {disk_key_of(disk.userdevice): disk.ref for disk in meta.disks()}
    return dump_ova_xml(meta), refs


# VM fields VM.create takes (xapi's datamodel: the fields of VM.create's record, RW or
# static-RO); everything else is runtime state that xapi fills in itself.
VM_CREATE_FIELDS = (
    "name_label", "name_description", "user_version", "is_a_template", "affinity", "memory_target",
    "memory_static_max", "memory_dynamic_max", "memory_dynamic_min", "memory_static_min", "VCPUs_params",
    "VCPUs_max", "VCPUs_at_startup", "actions_after_shutdown", "actions_after_reboot", "actions_after_crash",
    "PV_bootloader", "PV_kernel", "PV_ramdisk", "PV_args", "PV_bootloader_args", "PV_legacy_args",
    "HVM_boot_policy", "HVM_boot_params", "HVM_shadow_multiplier", "platform", "PCI_bus", "other_config",
    "recommendations", "xenstore_data", "ha_always_run", "ha_restart_priority", "tags", "blocked_operations",
    "protection_policy", "is_snapshot_from_vmpp", "snapshot_schedule", "is_vmss_snapshot", "appliance",
    "start_delay", "shutdown_delay", "order", "suspend_SR", "version", "generation_id",
    "hardware_platform_version", "has_vendor_device", "reference_label", "domain_type", "NVRAM",
)


def vm_create_record(meta: OvaMetadata, *, name: str, keep_macs: bool, run_id: int, extra_other_config: dict) -> dict:
    """The record for VM.create from the point's ova.xml (references to other objects cleared)."""
    source = meta.vm
    record = {field: source[field] for field in VM_CREATE_FIELDS if field in source}
    for field in ("affinity", "protection_policy", "snapshot_schedule", "appliance", "suspend_SR"):
        if field in record:
            record[field] = NULL_REF
    record["name_label"] = name
    record["is_a_template"] = False
    other = dict(record.get("other_config", {}))
    if not keep_macs:
        other.pop("mac_seed", None)
    other.pop("import_task", None)
    other.update({RESTORE_TAG: str(run_id), **extra_other_config})
    record["other_config"] = other
    return {key: _xmlrpc_safe(value) for key, value in record.items()}


def _xmlrpc_safe(value):
    """XML-RPC ints are 32-bit: xapi takes int64 fields as strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -2**31 <= value < 2**31:
        return str(value)
    if isinstance(value, dict):
        return {k: _xmlrpc_safe(v) for k, v in value.items()}
    return value
