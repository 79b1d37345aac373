from rest_framework import serializers

from sesamweb.identifiers import parse_id
from xenpools.models import VM, Pool

from ..choices import BackupMethod, QuiesceFallback, StoreKind
from ..models import BackupRun, DataStore, PoolCleanup, RestorePoint, VmBackup


class DataStoreSerializer(serializers.ModelSerializer):
    """Never returns a secret: the passphrase, the S3 keys and the data key are write-only or absent."""

    location = serializers.CharField(read_only=True)
    restore_point_count = serializers.IntegerField(read_only=True)
    bytes_stored = serializers.IntegerField(read_only=True)
    key_exported = serializers.SerializerMethodField()
    passphrase = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=False,
                                       style={"input_type": "password"})
    s3_access_key = serializers.CharField(write_only=True, required=False, allow_blank=True)
    s3_secret = serializers.CharField(write_only=True, required=False, allow_blank=True,
                                      style={"input_type": "password"})

    class Meta:
        model = DataStore
        fields = ["id", "name", "kind", "location", "path", "s3_endpoint", "s3_bucket", "s3_prefix", "s3_region",
                  "s3_access_key", "s3_secret", "encrypted", "passphrase", "key_exported", "key_exported_at",
                  "chunk_size", "compression_level", "cluster", "device_server", "max_parallel_streams", "restore_point_count",
                  "bytes_stored", "created_at"]
        read_only_fields = ["chunk_size", "key_exported_at", "device_server", "created_at"]

    def get_key_exported(self, store) -> bool:
        return store.key_exported_at is not None

    def validate(self, data):
        if data.get("encrypted", True) and len(data.get("passphrase", "")) < 12:
            raise serializers.ValidationError({"passphrase": ["An encrypted store needs a passphrase of at least 12 characters."]})
        if data.get("kind", StoreKind.LOCAL) == StoreKind.LOCAL and not data.get("path"):
            raise serializers.ValidationError({"path": ["A local data store needs a directory."]})
        if data.get("kind") == StoreKind.S3:
            missing = [n for n in ("s3_endpoint", "s3_bucket", "s3_access_key", "s3_secret") if not data.get(n)]
            if missing:
                raise serializers.ValidationError({n: ["Required for an S3 data store."] for n in missing})
        return data


class VmBackupSerializer(serializers.ModelSerializer):
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    phase_display = serializers.CharField(source="get_phase_display", read_only=True)
    phase_text = serializers.CharField(read_only=True, help_text="The phase in words; a failed backup names the "
                                                                  "phase it failed in")
    kind_text = serializers.CharField(read_only=True, help_text="Full / incremental, or why it is not known")
    method_display = serializers.CharField(source="get_method_display", read_only=True)
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)
    store_name = serializers.CharField(source="store.name", read_only=True, default=None, allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    dedup_ratio = serializers.FloatField(read_only=True, allow_null=True)
    compression_ratio = serializers.FloatField(read_only=True, allow_null=True)
    progress = serializers.FloatField(read_only=True)
    rate = serializers.SerializerMethodField(help_text="Average bytes per second over the backup, once finished")

    class Meta:
        model = VmBackup
        fields = ["id", "vm_uuid", "vm_name", "pool", "store", "store_name", "method", "method_display",
                  "incremental", "kind", "kind_display", "status", "status_display", "phase", "phase_display",
                  "phase_text", "kind_text", "total_bytes", "bytes_read", "bytes_processed", "bytes_new", "bytes_stored", "progress", "rate",
                  "dedup_ratio", "compression_ratio", "downtime_seconds", "duration_seconds", "warnings", "error",
                  "restore_point", "attempts", "kind_reason", "cancel_requested", "dispatched_at", "waiting", "run",
                  "created_at", "started_at", "finished_at"]

    def get_rate(self, vm_backup) -> float | None:
        seconds = vm_backup.duration_seconds
        return vm_backup.bytes_processed / seconds if seconds else None


class BackupRunSerializer(serializers.ModelSerializer):
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    requested_by = serializers.CharField(source="requested_by.get_username", read_only=True, default=None,
                                         allow_null=True)
    job_name = serializers.CharField(source="job.name", read_only=True, default=None, allow_null=True)
    vm_backups = VmBackupSerializer(many=True, read_only=True)

    class Meta:
        model = BackupRun
        fields = ["id", "trigger", "status", "status_display", "requested_by", "job", "job_name", "schedule",
                  "slot", "window_ends_at", "created_at", "started_at", "finished_at", "message", "vm_backups"]


class RestorePointSerializer(serializers.ModelSerializer):
    store_name = serializers.CharField(source="store.name", read_only=True)
    job_name = serializers.CharField(source="job.name", read_only=True, default=None, allow_null=True)

    class Meta:
        model = RestorePoint
        fields = ["id", "store", "store_name", "point_id", "vm_uuid", "vm_name", "pool_uuid", "taken_at", "method",
                  "kind", "parent_point_id", "virtual_size", "bytes_new", "bytes_stored", "has_memory",
                  "verify_state", "verified_at", "job", "job_name", "protected", "protected_note"]
        read_only_fields = fields


class BackupOptionsSerializer(serializers.Serializer):
    quiesce_fallback = serializers.ChoiceField(choices=QuiesceFallback.choices, default=QuiesceFallback.FAIL)
    restart_after_snapshot = serializers.BooleanField(default=True)
    allow_hard_shutdown = serializers.BooleanField(default=False)
    shutdown_timeout = serializers.IntegerField(min_value=10, default=600)
    transfer_compression = serializers.ChoiceField(choices=["none", "zstd", "gzip"], default="none")


class BackupRequestSerializer(serializers.Serializer):
    vm = serializers.CharField(help_text="UUID of the VM")
    store = serializers.CharField(help_text="Data store id or name")
    method = serializers.ChoiceField(choices=BackupMethod.choices)
    incremental = serializers.BooleanField(default=False)
    options = BackupOptionsSerializer(required=False)

    def validate_vm(self, value):
        vm = (VM.objects.select_related("pool").filter(uuid=value.strip(), is_snapshot=False)
              .order_by("removed_at").first())
        if vm is None:
            raise serializers.ValidationError(f"No VM with UUID {value} in any pool.")
        return vm

    def validate_store(self, value):
        store_id = parse_id(value)
        stores = DataStore.objects.filter(pk=store_id) if store_id is not None else DataStore.objects.filter(name=value)
        store = stores.first()
        if store is None:
            raise serializers.ValidationError(f"No data store {value!r}.")
        return store


class PoolCleanupSerializer(serializers.ModelSerializer):
    """A clean-up pass over a pool (backups/pool_cleanup.py): what it removed and what it could
    not remove (with the reason; retried at the next pass)."""

    pool = serializers.PrimaryKeyRelatedField(queryset=Pool.objects.all(),
                                              help_text="the pool to clean (on a request)")
    requested_by = serializers.CharField(source="requested_by.get_username", read_only=True, default=None,
                                         allow_null=True, help_text="who asked for it (none: the hourly pass)")
    summary = serializers.CharField(read_only=True)

    class Meta:
        model = PoolCleanup
        fields = ["id", "pool", "trigger", "requested_by", "status", "created_at", "started_at", "finished_at",
                  "summary", "removed", "kept", "waiting", "error"]
        read_only_fields = [f for f in fields if f != "pool"]
