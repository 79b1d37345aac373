"""Record templates: the complete field list of every class the simulator serves.

Field names and value shapes follow xapi's datamodel (ocaml/idl/datamodel*.ml) so that a
client parsing a real record parses ours. Ints are Python ints (sent as strings on the
wire), datetimes are ``Timestamp``. ``new_record(cls, **fields)`` fills in the rest.
"""

from .xmlrpc import EPOCH, Timestamp

NULL = "OpaqueRef:NULL"

TEMPLATES: dict[str, dict] = {
    "pool": dict(
        name_label="", name_description="", master=NULL, default_SR=NULL, suspend_image_SR=NULL,
        crash_dump_SR=NULL, other_config={}, ha_enabled=False, ha_configuration={},
        ha_statefiles=[], ha_host_failures_to_tolerate=0, ha_plan_exists_for=0,
        ha_allow_overcommit=False, ha_overcommitted=False, blobs={}, tags=[], gui_config={},
        health_check_config={}, wlb_url="", wlb_username="", wlb_enabled=False,
        wlb_verify_cert=False, redo_log_enabled=False, redo_log_vdi=NULL, vswitch_controller="",
        restrictions={}, metadata_VDIs=[], ha_cluster_stack="xhad", allowed_operations=[],
        current_operations={}, guest_agent_config={}, cpu_info={}, policy_no_vendor_device=False,
        live_patching_disabled=False, igmp_snooping_enabled=False, uefi_certificates="",
        is_psr_pending=False, tls_verification_enabled=True, repositories=[],
        client_certificate_auth_enabled=False, client_certificate_auth_name="",
        repository_proxy_url="", repository_proxy_username="", repository_proxy_password=NULL,
        migration_compression=False, coordinator_bias=True, telemetry_uuid=NULL,
        telemetry_frequency="weekly", telemetry_next_collection=EPOCH,
        last_update_sync=EPOCH, update_sync_frequency="weekly", update_sync_day=0,
        update_sync_enabled=False, recommendations={},
    ),
    "host": dict(
        name_label="", name_description="", memory_overhead=0, allowed_operations=[],
        current_operations={}, API_version_major=2, API_version_minor=21, API_version_vendor="XenSource",
        API_version_vendor_implementation={}, enabled=True, software_version={}, other_config={},
        capabilities=[], cpu_configuration={}, sched_policy="credit", supported_bootloaders=["pygrub", "eliloader"],
        resident_VMs=[], logging={}, PIFs=[], suspend_image_sr=NULL, crash_dump_sr=NULL,
        crashdumps=[], patches=[], updates=[], PBDs=[], host_CPUs=[], cpu_info={}, hostname="",
        address="", metrics=NULL, license_params={}, ha_statefiles=[], ha_network_peers=[],
        blobs={}, tags=[], external_auth_type="", external_auth_service_name="",
        external_auth_configuration={}, edition="xcp-ng", license_server={}, bios_strings={},
        power_on_mode="", power_on_config={}, local_cache_sr=NULL, chipset_info={}, PCIs=[],
        PGPUs=[], PUSBs=[], ssl_legacy=False, guest_VCPUs_params={}, display="enabled",
        virtual_hardware_platform_versions=[0, 1, 2], control_domain=NULL, updates_requiring_reboot=[],
        features=[], iscsi_iqn="", multipathing=False, uefi_certificates="", certificates=[],
        editions=["xcp-ng"], pending_guidances=[], tls_verification_enabled=True,
        last_software_update=EPOCH, https_only=False, latest_synced_updates_applied="unknown",
        numa_affinity_policy="default_policy", last_update_hash="",
    ),
    "host_metrics": dict(memory_total=0, memory_free=0, live=True, last_updated=EPOCH, other_config={}),
    "SR": dict(
        name_label="", name_description="", allowed_operations=[], current_operations={}, VDIs=[],
        PBDs=[], virtual_allocation=0, physical_utilisation=0, physical_size=0, type="ext",
        content_type="user", shared=False, other_config={}, tags=[], sm_config={}, blobs={},
        local_cache_enabled=False, introduced_by=NULL, clustered=False, is_tools_sr=False,
    ),
    "PBD": dict(host=NULL, SR=NULL, device_config={}, currently_attached=True, other_config={}),
    "VDI": dict(
        name_label="", name_description="", allowed_operations=[], current_operations={}, SR=NULL,
        VBDs=[], crash_dumps=[], virtual_size=0, physical_utilisation=0, type="user",
        sharable=False, read_only=False, other_config={}, storage_lock=False, location="",
        managed=True, missing=False, parent=NULL, xenstore_data={}, sm_config={},
        is_a_snapshot=False, snapshot_of=NULL, snapshots=[], snapshot_time=EPOCH, tags=[],
        allow_caching=False, on_boot="persist", metadata_of_pool=NULL, metadata_latest=False,
        is_tools_iso=False, cbt_enabled=False,
    ),
    "VBD": dict(
        allowed_operations=[], current_operations={}, VM=NULL, VDI=NULL, device="", userdevice="0",
        bootable=False, mode="RW", type="Disk", unpluggable=True, storage_lock=False, empty=False,
        other_config={}, currently_attached=False, status_code=0, status_detail="",
        runtime_properties={}, qos_algorithm_type="", qos_algorithm_params={},
        qos_supported_algorithms=[], metrics=NULL,
    ),
    "VM": dict(
        allowed_operations=[], current_operations={}, name_label="", name_description="",
        power_state="Halted", user_version=1, is_a_template=False, is_default_template=False,
        suspend_VDI=NULL, resident_on=NULL, scheduled_to_be_resident_on=NULL, affinity=NULL,
        memory_overhead=0, memory_target=0, memory_static_max=0, memory_dynamic_max=0,
        memory_dynamic_min=0, memory_static_min=0, VCPUs_params={}, VCPUs_max=1,
        VCPUs_at_startup=1, actions_after_softreboot="soft_reboot", actions_after_shutdown="destroy",
        actions_after_reboot="restart", actions_after_crash="restart", consoles=[], VIFs=[], VBDs=[],
        VUSBs=[], crash_dumps=[], VTPMs=[], PV_bootloader="", PV_kernel="", PV_ramdisk="", PV_args="",
        PV_bootloader_args="", PV_legacy_args="", HVM_boot_policy="BIOS order",
        HVM_boot_params={"order": "cdn"}, HVM_shadow_multiplier=1.0, platform={}, PCI_bus="",
        other_config={}, domid=-1, domarch="", last_boot_CPU_flags={}, is_control_domain=False,
        metrics=NULL, guest_metrics=NULL, last_booted_record="", recommendations="",
        xenstore_data={}, ha_always_run=False, ha_restart_priority="", is_a_snapshot=False,
        snapshot_of=NULL, snapshots=[], snapshot_time=EPOCH, transportable_snapshot_id="",
        blobs={}, tags=[], blocked_operations={}, snapshot_info={}, snapshot_metadata="",
        parent=NULL, children=[], bios_strings={}, protection_policy=NULL,
        is_snapshot_from_vmpp=False, snapshot_schedule=NULL, is_vmss_snapshot=False,
        appliance=NULL, start_delay=0, shutdown_delay=0, order=0, VGPUs=[], attached_PCIs=[],
        suspend_SR=NULL, version=0, generation_id="", hardware_platform_version=0,
        has_vendor_device=False, requires_reboot=False, reference_label="",
        domain_type="hvm", NVRAM={}, pending_guidances=[], pending_guidances_recommended=[],
        pending_guidances_full=[],
    ),
    "VM_metrics": dict(
        memory_actual=0, VCPUs_number=0, VCPUs_utilisation={}, VCPUs_CPU={}, VCPUs_params={},
        VCPUs_flags={}, state=[], start_time=EPOCH, install_time=EPOCH, last_updated=EPOCH,
        other_config={}, hvm=True, nested_virt=False, nomigrate=False, current_domain_type="hvm",
    ),
    "VM_guest_metrics": dict(
        os_version={}, netbios_name={}, PV_drivers_version={}, PV_drivers_up_to_date=True,
        memory={}, disks={}, networks={}, other={}, last_updated=EPOCH, other_config={},
        live=True, can_use_hotplug_vbd="yes", can_use_hotplug_vif="yes",
        PV_drivers_detected=True, services={},
    ),
    "network": dict(
        name_label="", name_description="", allowed_operations=[], current_operations={}, VIFs=[],
        PIFs=[], MTU=1500, other_config={}, bridge="", managed=True, blobs={}, tags=[],
        default_locking_mode="unlocked", assigned_ips={}, purpose=[],
    ),
    "PIF": dict(
        device="eth0", network=NULL, host=NULL, MAC="", MTU=1500, VLAN=-1, metrics=NULL,
        physical=True, currently_attached=True, ip_configuration_mode="Static", IP="",
        netmask="255.0.0.0", gateway="", DNS="", bond_slave_of=NULL, bond_master_of=[],
        VLAN_master_of=NULL, VLAN_slave_of=[], management=True, other_config={},
        disallow_unplug=False, tunnel_access_PIF_of=[], tunnel_transport_PIF_of=[],
        ipv6_configuration_mode="None", IPv6=[], ipv6_gateway="", primary_address_type="IPv4",
        managed=True, properties={}, capabilities=[], igmp_snooping_status="unknown",
        sriov_physical_PIF_of=[], sriov_logical_PIF_of=[], PCI=NULL,
    ),
    "VIF": dict(
        allowed_operations=[], current_operations={}, device="0", network=NULL, VM=NULL, MAC="",
        MTU=1500, other_config={}, currently_attached=False, status_code=0, status_detail="",
        runtime_properties={}, qos_algorithm_type="", qos_algorithm_params={},
        qos_supported_algorithms=[], metrics=NULL, MAC_autogenerated=False, locking_mode="network_default",
        ipv4_allowed=[], ipv6_allowed=[], ipv4_configuration_mode="None", ipv4_addresses=[],
        ipv4_gateway="", ipv6_configuration_mode="None", ipv6_addresses=[], ipv6_gateway="",
    ),
    "task": dict(
        name_label="", name_description="", allowed_operations=["cancel"], current_operations={},
        created=EPOCH, finished=EPOCH, status="pending", resident_on=NULL, progress=0.0, type="",
        result="", error_info=[], other_config={}, subtask_of=NULL, subtasks=[], backtrace="()",
    ),
    "session": dict(
        this_host=NULL, this_user=NULL, last_active=EPOCH, pool=False, other_config={},
        is_local_superuser=True, subject=NULL, validation_time=EPOCH, auth_user_sid="",
        auth_user_name="root", rbac_permissions=[], tasks=[], parent=NULL, originator="",
        client_certificate=False,
    ),
    "message": dict(name="", priority=0, cls="VM", obj_uuid="", timestamp=EPOCH, body=""),
}

# Classes whose names the API serves, in the casing xapi uses on the wire.
CLASSES = list(TEMPLATES)
CLASS_BY_LOWER = {c.lower(): c for c in CLASSES}

# Fields whose value is a datetime, used to restore Timestamp after loading persisted JSON.
DATETIME_FIELDS = {
    cls: {k for k, v in tmpl.items() if isinstance(v, Timestamp)} for cls, tmpl in TEMPLATES.items()
}


def new_record(cls: str, **fields) -> dict:
    # Template values are flat (scalars, or dicts/lists of scalars): one level of copying.
    record = {k: v.copy() if type(v) in (dict, list) else v for k, v in TEMPLATES[cls].items()}
    unknown = set(fields) - set(record) - {"uuid"}
    if unknown:
        raise KeyError("%s has no field(s) %s" % (cls, ", ".join(sorted(unknown))))
    record.update(fields)
    return record
