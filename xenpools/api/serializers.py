from rest_framework import serializers

from ..choices import SyncState
from ..connection import normalise_fingerprint, parse_address
from ..models import VDI, VIF, VM, Host, Network, Pool, StorageRepository, VirtualDisk


class SyncStateSerializer(serializers.Serializer):
    """A pool's last or current sync (xenpools.sync.sync_state); for the schema."""

    id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=SyncState.choices)
    state_label = serializers.CharField()
    phase = serializers.CharField(help_text="queued, connecting, reading, writing, done (empty before the first)")
    phase_label = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="hosts, vms, srs, vdis read so far")
    ok = serializers.BooleanField(allow_null=True, help_text="the last finished sync succeeded (null: none yet)")
    outcome = serializers.CharField(help_text="the last finished sync's result in plain words")
    finished_at = serializers.DateTimeField(allow_null=True)
    status_url = serializers.URLField(required=False, help_text="where to follow it (in the 202 answer)")


class PoolSerializer(serializers.ModelSerializer):
    """The password is write-only: accepted on create / update, never returned."""

    password = serializers.CharField(write_only=True, required=False, trim_whitespace=False,
                                     style={"input_type": "password"})
    address = serializers.CharField(help_text="host, host:port, https://host:port or http://host:port")
    fingerprint = serializers.CharField(write_only=True, required=False, allow_blank=True,
                                        help_text="https: the master's SHA-256 certificate fingerprint you confirmed")
    vm_count = serializers.IntegerField(read_only=True)
    url = serializers.CharField(read_only=True)
    streams_per_host = serializers.IntegerField(min_value=1, max_value=64, required=False,
                                                help_text="Backup streams one host serves at once")
    snapshots_at_once = serializers.IntegerField(min_value=1, max_value=64, required=False,
                                                 help_text="Snapshots backups take in this pool at once")

    class Meta:
        model = Pool
        fields = ["id", "name", "address", "url", "username", "password", "fingerprint", "fingerprints", "uuid",
                  "pool_label", "master_address", "member_addresses", "health", "last_error", "last_contact",
                  "last_sync", "ha_enabled", "product_brand", "product_version", "vm_count",
                  "streams_per_host", "snapshots_at_once", "created"]
        read_only_fields = ["fingerprints", "uuid", "pool_label", "master_address", "member_addresses", "health",
                            "last_error", "last_contact", "last_sync", "ha_enabled", "product_brand",
                            "product_version", "created"]

    def validate_address(self, value):
        if self.instance is not None and value != self.instance.address and value != self.instance.url:
            raise serializers.ValidationError("the address of a registered pool cannot change; add a new pool")
        try:
            parse_address(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_fingerprint(self, value):
        if not value:
            return ""
        try:
            return normalise_fingerprint(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        if self.instance is None and not attrs.get("password"):
            raise serializers.ValidationError({"password": "the pool's password is required"})
        return attrs


class ConnectionTestSerializer(serializers.Serializer):
    address = serializers.CharField()
    username = serializers.CharField(default="root")
    password = serializers.CharField(write_only=True, trim_whitespace=False)
    fingerprint = serializers.CharField(required=False, allow_blank=True)


class HostSerializer(serializers.ModelSerializer):
    class Meta:
        model = Host
        fields = ["id", "pool", "uuid", "name", "address", "enabled", "live", "is_master", "memory_total",
                  "memory_free", "product_version"]


class StorageRepositorySerializer(serializers.ModelSerializer):
    free_space = serializers.IntegerField(read_only=True)

    class Meta:
        model = StorageRepository
        fields = ["id", "pool", "uuid", "name", "type", "content_type", "shared", "physical_size",
                  "physical_utilisation", "virtual_allocation", "free_space", "hosts"]


class NetworkSerializer(serializers.ModelSerializer):
    class Meta:
        model = Network
        fields = ["id", "pool", "uuid", "name", "bridge", "mtu", "purpose"]


class VDISerializer(serializers.ModelSerializer):
    class Meta:
        model = VDI
        fields = ["id", "uuid", "name", "sr", "virtual_size", "physical_utilisation", "type", "cbt_enabled",
                  "is_snapshot", "snapshot_of"]


class VirtualDiskSerializer(serializers.ModelSerializer):
    vdi = VDISerializer(read_only=True)

    class Meta:
        model = VirtualDisk
        fields = ["uuid", "userdevice", "type", "mode", "bootable", "vdi"]


class VIFSerializer(serializers.ModelSerializer):
    class Meta:
        model = VIF
        fields = ["uuid", "device", "mac", "mtu", "network"]


class VMSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True, default=None, allow_null=True)

    class Meta:
        model = VM
        fields = ["id", "pool", "uuid", "name", "description", "power_state", "host", "host_name", "os_name",
                  "is_windows", "tags", "memory", "vcpus", "is_snapshot", "snapshot_of", "snapshot_time",
                  "ha_restart_priority", "last_seen", "removed_at"]


class VMDetailSerializer(VMSerializer):
    disks = VirtualDiskSerializer(many=True, read_only=True)
    vifs = VIFSerializer(many=True, read_only=True)

    class Meta(VMSerializer.Meta):
        fields = VMSerializer.Meta.fields + ["disks", "vifs"]
