from rest_framework import viewsets

from sesamweb.accounts.roles import AUDIT

from ..filters import AuditEventFilterSet
from ..models import AuditEvent
from .serializers import AuditEventSerializer


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log, read-only (administrators and auditors)."""

    queryset = AuditEvent.objects.order_by("-sequence")
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    ordering_fields = ["sequence", "created"]
    search_fields = ["message", "target_repr", "actor_username"]
    read_capability = AUDIT
