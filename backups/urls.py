from django.urls import include, path

app_name = "backups"

urlpatterns = [
    path("restore/", include("backups.restore.urls")),
]
