"""Pagination of every REST list: ?limit= and ?offset=, with the page size bounded so that a
client asking for ?limit=10**30 gets the largest page, not a database overflow (HTTP 500)."""
from rest_framework.pagination import LimitOffsetPagination


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = 1000


__all__ = ["BoundedLimitOffsetPagination"]
