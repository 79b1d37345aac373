from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sesamweb.accounts.views import SignInView, SignOutView

urlpatterns = [
    path("", include("sesamweb.dashboard.urls")),
    path("sign-in/", SignInView.as_view(), name="login"),
    path("sign-out/", SignOutView.as_view(), name="logout"),
    path("accounts/", include("sesamweb.accounts.urls")),
    path("audit/", include("sesamweb.audit.urls")),
    path("notifications/", include("sesamweb.notify.urls")),
    path("pools/", include("xenpools.urls")),
    path("backups/", include("backups.urls")),
    path("api/", include("sesamweb.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # A page: anonymous visitors go to the sign-in page (the schema it loads checks the role).
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
]
