from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..choices import ChannelKind, EventName
from ..forms import CHANNEL_FORMS, RuleForm
from ..models import Channel, Delivery, DeliveryAttempt, Event, Rule


class ChannelSerializer(serializers.ModelSerializer):
    """`config` holds the kind's settings (the same fields as the page's form); `secret`
    (SMTP password, gateway token or webhook signing key) is write-only: omit it to keep
    the stored one. It is never returned; `has_secret` says whether one is stored."""

    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    config = serializers.DictField(required=False, default=dict)
    secret = serializers.CharField(write_only=True, required=False, allow_blank=True,
                                   style={"input_type": "password"})
    is_failing = serializers.BooleanField(read_only=True)
    has_secret = serializers.BooleanField(read_only=True)

    class Meta:
        model = Channel
        fields = ["id", "name", "kind", "enabled", "config", "secret", "has_secret", "fallback", "is_failing",
                  "consecutive_failures", "last_error", "last_error_at", "last_success_at", "last_test_at",
                  "last_test_ok", "last_test_result", "created"]
        read_only_fields = ["consecutive_failures", "last_error", "last_error_at", "last_success_at",
                            "last_test_at", "last_test_ok", "last_test_result", "created"]

    def validate(self, attrs):
        kind = attrs.get("kind") or (self.instance.kind if self.instance else None)
        if self.instance is not None and kind != self.instance.kind:
            raise serializers.ValidationError({"kind": "A channel's kind cannot change; add a new channel."})
        form_class = CHANNEL_FORMS[kind]
        config = {**(self.instance.config if self.instance else {}), **attrs.get("config", {})}
        data = {**config, "name": attrs.get("name", self.instance.name if self.instance else ""),
                "enabled": attrs.get("enabled", self.instance.enabled if self.instance else True)}
        fallback = attrs.get("fallback", self.instance.fallback if self.instance else None)
        if fallback is not None:
            data["fallback"] = fallback.pk
        if form_class.secret_field and attrs.get("secret") is not None:
            data[form_class.secret_field] = attrs["secret"]
        form = form_class(data=data, instance=self.instance)
        if not form.is_valid():
            raise serializers.ValidationError({field: [str(e) for e in errors] for field, errors in form.errors.items()})
        return {"form": form}


@extend_schema_field({"type": "string", "pattern": r"^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$",
                      "description": "Console time zone, HH:MM"})
class LocalTimeField(serializers.TimeField):
    """A wall-clock time in the console's zone. OpenAPI's "format: time" means an RFC 3339
    time with an offset, which a quiet-hours boundary has not."""


class RuleSerializer(serializers.ModelSerializer):
    event_names = serializers.ListField(child=serializers.ChoiceField(choices=EventName.choices), required=False)
    quiet_start = LocalTimeField(required=False, allow_null=True)
    quiet_end = LocalTimeField(required=False, allow_null=True)

    class Meta:
        model = Rule
        fields = ["id", "name", "enabled", "event_names", "min_severity", "object_key", "channels",
                  "quiet_start", "quiet_end", "created"]
        read_only_fields = ["created"]

    def validate(self, attrs):
        data = {field: getattr(self.instance, field) for field in RuleForm.Meta.fields if self.instance} if \
            self.instance else {}
        if self.instance:
            data["channels"] = list(self.instance.channels.values_list("pk", flat=True))
        for key, value in attrs.items():
            data[key] = [c.pk for c in value] if key == "channels" else value
        form = RuleForm(data=data, instance=self.instance)
        if not form.is_valid():
            raise serializers.ValidationError({field: [str(e) for e in errors] for field, errors in form.errors.items()})
        return {"form": form}


class EventSerializer(serializers.ModelSerializer):
    objects = serializers.JSONField(source="about", read_only=True)

    class Meta:
        model = Event
        fields = ["id", "created", "name", "severity", "title", "objects", "details"]
        read_only_fields = fields


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "worker", "started", "finished", "ok", "permanent", "error"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    event = EventSerializer(read_only=True)
    channel_name = serializers.CharField(source="channel.name", read_only=True)
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = ["id", "event", "channel", "channel_name", "is_test", "fallback_of", "status", "attempts",
                  "next_attempt_at", "held_for_quiet_hours", "last_error", "created", "sent_at", "attempt_log"]
        read_only_fields = fields
