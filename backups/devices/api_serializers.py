"""REST shapes of device servers and registration tokens (no token text except once, at creation)."""
from rest_framework import serializers

from .models import DeviceServer, RegistrationToken


class DeviceServerSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="status_label", read_only=True)
    heartbeat_age_seconds = serializers.SerializerMethodField()
    running_streams = serializers.SerializerMethodField()
    bytes_per_second = serializers.SerializerMethodField()
    stores = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = DeviceServer
        fields = ["id", "name", "site", "cluster_name", "address", "version", "capabilities", "max_streams",
                  "status", "registered_at", "last_heartbeat", "heartbeat_age_seconds", "load", "down_since",
                  "revoked_at", "running_streams", "bytes_per_second", "stores"]
        read_only_fields = [f for f in fields if f != "max_streams"]

    def get_heartbeat_age_seconds(self, server) -> float | None:
        return server.heartbeat_age()

    def _activity(self, server):
        from .stores import activity

        cache = self.context.setdefault("activity", {})
        if server.pk not in cache:
            cache[server.pk] = activity(server)
        return cache[server.pk]

    def get_running_streams(self, server) -> int:
        return self._activity(server).running

    def get_bytes_per_second(self, server) -> float:
        return self._activity(server).bytes_per_second


class RegistrationTokenSerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()
    hours = serializers.FloatField(write_only=True, required=False, min_value=0.05, max_value=24 * 30)

    class Meta:
        model = RegistrationToken
        fields = ["id", "name", "site", "hours", "state", "created_at", "expires_at", "used_at", "revoked_at"]
        read_only_fields = ["created_at", "expires_at", "used_at", "revoked_at"]

    def get_state(self, row) -> str:
        return row.state()


class NewRegistrationTokenSerializer(RegistrationTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once: give it to the device server's "
                                                            "`manage.py device_server register --token`")

    class Meta(RegistrationTokenSerializer.Meta):
        fields = [*RegistrationTokenSerializer.Meta.fields, "token"]


class RegistrationSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200, trim_whitespace=True)
    name = serializers.SlugField(max_length=60)
    public_key = serializers.CharField(max_length=100)
    address = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    version = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")
    capabilities = serializers.ListField(child=serializers.CharField(max_length=40), required=False, default=list,
                                         max_length=20)


class RegisteredSerializer(serializers.Serializer):
    name = serializers.CharField()
    site = serializers.CharField()
    cluster_name = serializers.CharField()


class StoreAssignmentSerializer(serializers.Serializer):
    store = serializers.IntegerField(help_text="Data store id")
