from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api_views

router = SimpleRouter()
router.register("restores", api_views.RestoreRunViewSet, basename="restore")

urlpatterns = [
    path("restore-points/<int:pk>/details/", api_views.RestorePointDetailsView.as_view(),
         name="restore-point-details"),
    path("restore-points/<int:pk>/disks/<str:key>/download", api_views.DiskDownloadView.as_view(),
         name="restore-point-disk-download"),
    path("restore-points/<int:pk>/xva", api_views.XvaExportView.as_view(), name="restore-point-xva"),
    *router.urls,
]
