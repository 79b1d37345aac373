"""API list pages: ?limit= and ?offset= as DRF's LimitOffsetPagination, but read with the one id
parser and capped. DRF's own class has no cap by default, so ?limit=10**30 reached the database
as LIMIT 10**30 and failed (500)."""
from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination

from .identifiers import parse_id


class ApiPagination(LimitOffsetPagination):
    @property
    def max_limit(self):
        return settings.SESAM_API_MAX_PAGE_SIZE

    def get_limit(self, request):
        limit = parse_id(request.query_params.get(self.limit_query_param))
        if not limit:  # absent, zero or not a number: the default page, as DRF does
            return min(self.default_limit, self.max_limit)
        return min(limit, self.max_limit)

    def get_offset(self, request):
        # An offset past the end is an empty page (DRF checks it against the count first).
        return parse_id(request.query_params.get(self.offset_query_param)) or 0
