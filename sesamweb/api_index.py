"""GET /api/: where each collection of the REST API is, and where its documentation is."""
from django.urls import URLResolver, reverse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView


def collection_names(patterns):
    """Names of the list routes (`<basename>-list`) the routers registered that one can read
    (some collections only take POST), in URL order."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from collection_names(entry.url_patterns)
        elif (entry.name and entry.name.endswith("-list") and not entry.pattern.converters
              and "get" in getattr(entry.callback, "actions", {})):
            yield entry.name


class ApiIndexView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(exclude=True)
    def get(self, request):
        from sesamweb import api_urls

        collections = {}
        for name in collection_names(api_urls.urlpatterns):
            collections.setdefault(name.removesuffix("-list"), request.build_absolute_uri(reverse(name)))
        return Response({
            "documentation": request.build_absolute_uri(reverse("api-docs")),
            "schema": request.build_absolute_uri(reverse("api-schema")),
            "collections": collections,
        })
