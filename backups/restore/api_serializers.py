"""REST shapes of restores: the request (a plan), the run, and a restore point's VM."""
from rest_framework import serializers

from sesamweb.identifiers import parse_id
from xenpools.models import Host, Network, Pool, StorageRepository

from ..models_restore import RestoreRun
from .plan import Identity, StartMode


def _by_pk_or_uuid(model, value, pool, what):
    """A pool object named by its database id or its XenAPI uuid."""
    rows = model.objects.filter(pool=pool)
    pk = parse_id(value)
    found = rows.filter(pk=pk).first() if pk is not None else None
    found = found or rows.filter(uuid=str(value)).first()
    if found is None:
        raise serializers.ValidationError(f"no {what} {value!r} in pool {pool}")
    return found


class RestoreRequestSerializer(serializers.Serializer):
    """Only point and target_pool are required: everything else defaults as the wizard proposes."""

    point = serializers.CharField(help_text='Restore point: database id, "<vm-uuid>/<timestamp>" or "store:<id>"')
    store = serializers.CharField(required=False, help_text="Data store name, when the point id is on several")
    target_pool = serializers.CharField(help_text="Pool id or name")
    target_host = serializers.CharField(required=False, allow_null=True, help_text="Host id or uuid")
    sr_by_disk = serializers.DictField(child=serializers.CharField(), required=False,
                                       help_text='Disk key ("vbd0", "suspend") -> SR id or uuid')
    network_by_vif = serializers.DictField(child=serializers.CharField(allow_null=True), required=False,
                                           help_text="VIF device -> network id or uuid; null leaves the interface out")
    identity = serializers.ChoiceField(choices=Identity.CHOICES, required=False)
    replace_original = serializers.BooleanField(required=False)
    name = serializers.CharField(required=False, allow_blank=False)
    start_mode = serializers.ChoiceField(choices=StartMode.CHOICES, required=False)
    disconnect_vifs = serializers.BooleanField(required=False)

    def validate_target_pool(self, value):
        pool_id = parse_id(value)
        pool = Pool.objects.filter(pk=pool_id).first() if pool_id is not None else None
        pool = pool or Pool.objects.filter(name=value).first()
        if pool is None:
            raise serializers.ValidationError(f"no pool {value!r}")
        return pool

    def to_plan(self):
        """The default plan for the point and pool, with what the request states."""
        from .plan import default_plan, find_point

        data = self.validated_data
        point = find_point(data["point"], data.get("store"))
        pool = data["target_pool"]
        plan = default_plan(point, pool)
        errors = {}
        if data.get("target_host"):
            try:
                plan.target_host = _by_pk_or_uuid(Host, data["target_host"], pool, "host")
            except serializers.ValidationError as exc:
                errors["target_host"] = exc.detail
        for key, value in data.get("sr_by_disk", {}).items():
            try:
                plan.sr_by_disk[key] = _by_pk_or_uuid(StorageRepository, value, pool, "SR")
            except serializers.ValidationError as exc:
                errors[f"sr_{key}"] = exc.detail
        for device, value in data.get("network_by_vif", {}).items():
            try:
                plan.network_by_vif[device] = None if value is None else _by_pk_or_uuid(Network, value, pool, "network")
            except serializers.ValidationError as exc:
                errors[f"network_{device}"] = exc.detail
        if errors:
            raise serializers.ValidationError(errors)
        for field in ("identity", "replace_original", "name", "start_mode", "disconnect_vifs"):
            if field in data:
                setattr(plan, field, data[field])
        return plan


class DiskRestoreRequestSerializer(serializers.Serializer):
    point = serializers.CharField()
    store = serializers.CharField(required=False)
    disk = serializers.CharField(help_text='Disk key, e.g. "vbd0"')
    sr = serializers.CharField(help_text="SR uuid")
    name = serializers.CharField(required=False, allow_blank=True)

    def validate_sr(self, value):
        sr = StorageRepository.objects.select_related("pool").filter(uuid=value).first()
        sr_id = parse_id(value)
        if sr is None and sr_id is not None:
            sr = StorageRepository.objects.select_related("pool").filter(pk=sr_id).first()
        if sr is None:
            raise serializers.ValidationError(f"no SR {value!r}")
        return sr


class RestoreRunSerializer(serializers.ModelSerializer):
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    phase_display = serializers.CharField(source="get_phase_display", read_only=True)
    requested_by = serializers.CharField(source="requested_by.get_username", read_only=True, default=None,
                                         allow_null=True)
    progress = serializers.FloatField(read_only=True)

    class Meta:
        model = RestoreRun
        fields = ["id", "kind", "trigger", "point", "store", "store_point_id", "source_vm_uuid", "source_vm_name",
                  "target_pool", "target_host", "plan", "path", "status", "status_display", "phase",
                  "phase_display", "bytes_total", "bytes_done", "progress", "rate", "restored_vm_uuid",
                  "restored_vdi_uuid", "warnings", "error", "requested_by", "cancel_requested", "created_at",
                  "started_at", "finished_at"]


class DiskDetailsSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    virtual_size = serializers.IntegerField()
    userdevice = serializers.CharField()
    bootable = serializers.BooleanField()
    is_memory = serializers.BooleanField()
    sr_uuid = serializers.CharField()
    sr_name = serializers.CharField()


class VifDetailsSerializer(serializers.Serializer):
    device = serializers.CharField()
    mac = serializers.CharField()
    network_name = serializers.CharField()
    bridge = serializers.CharField()
    network_uuid = serializers.CharField()


class PointDetailsSerializer(serializers.Serializer):
    vm_uuid = serializers.CharField()
    vm_name = serializers.CharField()
    description = serializers.CharField()
    memory = serializers.IntegerField()
    vcpus = serializers.IntegerField()
    has_memory = serializers.BooleanField()
    power_state = serializers.CharField()
    disks = DiskDetailsSerializer(many=True)
    vifs = VifDetailsSerializer(many=True)


class PlanProblemSerializer(serializers.Serializer):
    step = serializers.CharField()
    field = serializers.CharField()
    message = serializers.CharField()
