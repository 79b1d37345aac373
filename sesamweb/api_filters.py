"""Filter backends of the API (REST_FRAMEWORK["DEFAULT_FILTER_BACKENDS"])."""
from rest_framework import filters
from rest_framework.exceptions import ValidationError


class SearchFilter(filters.SearchFilter):
    """DRF's ?search=, with a refused term (e.g. one holding a NUL character) answered as
    {"search": [...]}: the 400 body every other input error has (ValidationErrors in the
    schema), not DRF's bare list."""

    def get_search_terms(self, request):
        try:
            return super().get_search_terms(request)
        except ValidationError as error:
            raise ValidationError({self.search_param: error.detail}) from None
