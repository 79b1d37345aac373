from rest_framework import serializers

from ..models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    diff = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ["id", "sequence", "created", "actor", "actor_username", "source", "action", "outcome",
                  "target_type", "target_id", "target_repr", "before", "after", "diff", "message",
                  "prev_hash", "hash"]
        read_only_fields = fields

    def get_diff(self, event) -> list[dict]:
        return [{"field": field, "before": old, "after": new} for field, old, new in event.diff]
