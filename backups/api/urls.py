from django.urls import include, path

urlpatterns = [
    path("", include("backups.restore.api_urls")),
]
