from django.conf import settings
from rest_framework import viewsets
from rest_framework.pagination import CursorPagination

from sesamweb.accounts.roles import AUDIT
from sesamweb.identifiers import parse_id

from ..filters import AuditEventFilterSet
from ..models import AuditEvent
from .serializers import AuditEventSerializer


class AuditCursorPagination(CursorPagination):
    """Seek pages on `sequence` (?cursor= from the next / previous links), no COUNT: a page
    of a million-row log costs what the first page of a short one does."""

    ordering = "-sequence"
    page_size = 100
    page_size_query_param = "limit"

    @property
    def max_page_size(self):
        return settings.SESAM_API_MAX_PAGE_SIZE

    def get_page_size(self, request):
        size = parse_id(request.query_params.get(self.page_size_query_param))  # as ApiPagination reads ?limit=
        return min(size or self.page_size, self.max_page_size)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log, read-only (administrators and auditors), newest first in seek pages."""

    queryset = AuditEvent.objects.order_by("-sequence")
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    pagination_class = AuditCursorPagination
    ordering_fields = ["sequence"]
    search_fields = ["message", "target_repr", "actor_username"]
    read_capability = AUDIT
