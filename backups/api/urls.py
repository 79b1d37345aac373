from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("stores", views.DataStoreViewSet, basename="datastore")
router.register("backups", views.BackupRequestViewSet, basename="backup-request")
router.register("runs", views.BackupRunViewSet, basename="backup-run")
router.register("vm-backups", views.VmBackupViewSet, basename="vm-backup")
router.register("restore-points", views.RestorePointViewSet, basename="restore-point")
router.register("pool-cleanups", views.PoolCleanupViewSet, basename="pool-cleanup")

urlpatterns = [
    path("", include("backups.restore.api_urls")),
    path("", include("backups.jobs.api_urls")),
    path("", include("backups.devices.api_urls")),
    *router.urls,
]
