"""REST API: each app contributes its own router under /api/."""
from django.urls import include, path

from .api_index import ApiIndexView

urlpatterns = [
    path("", ApiIndexView.as_view(), name="api-index"),
    path("", include("sesamweb.accounts.api.urls")),
    path("", include("sesamweb.audit.api.urls")),
    path("", include("sesamweb.notify.api.urls")),
    path("", include("xenpools.api.urls")),
    path("", include("backups.api.urls")),
]
