from django.urls import include, path

from . import views
from .jobs import vm_views
from .jobs import views as job_views

app_name = "backups"

urlpatterns = [
    path("", views.RunListView.as_view(), name="index"),
    path("history/", views.HistoryView.as_view(), name="history"),
    path("runs/<int:pk>/", views.RunDetailView.as_view(), name="run_detail"),
    path("runs/<int:pk>/cancel/", views.RunCancelView.as_view(), name="run_cancel"),
    path("runs/<int:pk>/retry/", job_views.RunRetryView.as_view(), name="run_retry"),
    path("vm-backups/<int:pk>/cancel/", job_views.VmBackupCancelView.as_view(), name="vm_backup_cancel"),
    path("vm-backups/<int:pk>/", views.VmBackupDetailView.as_view(), name="vm_backup_detail"),
    path("vms/<int:vm_pk>/back-up-now/", views.BackupNowView.as_view(), name="backup_now"),
    path("vms/add-to-job/", vm_views.VmsAddToJobView.as_view(), name="vms_add_to_job"),
    path("vms/back-up-now/", vm_views.VmsBackUpNowView.as_view(), name="vms_back_up_now"),
    path("pools/<int:pk>/clean-up/", views.PoolCleanupView.as_view(), name="pool_cleanup"),
    path("stores/", views.StoreListView.as_view(), name="store_list"),
    path("stores/add/", views.StoreAddView.as_view(), name="store_add"),
    path("stores/<int:pk>/", views.StoreDetailView.as_view(), name="store_detail"),
    path("stores/<int:pk>/key/", views.StoreKeyExportView.as_view(), name="store_key_export"),
    path("stores/<int:pk>/schedules/add/", views.MaintenanceScheduleSaveView.as_view(), name="maintenance_schedule_add"),
    path("stores/<int:pk>/schedules/<int:schedule_pk>/", views.MaintenanceScheduleSaveView.as_view(),
         name="maintenance_schedule_edit"),
    path("stores/<int:pk>/schedules/<int:schedule_pk>/remove/", views.MaintenanceScheduleRemoveView.as_view(),
         name="maintenance_schedule_remove"),
    path("stores/<int:pk>/edit/", views.StoreEditView.as_view(), name="store_edit"),
    path("stores/<int:pk>/offline/", views.StoreOfflineView.as_view(), name="store_offline"),
    path("stores/<int:pk>/forget/", views.StoreForgetView.as_view(), name="store_forget"),
    path("stores/<int:pk>/delete/", views.StoreDeleteView.as_view(), name="store_delete"),
    path("stores/<int:pk>/prune-preview/", views.StorePrunePreviewView.as_view(), name="store_prune_preview"),
    path("stores/<int:pk>/<slug:action>/", views.StoreMaintenanceView.as_view(), name="store_maintenance"),
    path("restore-points/", views.PointListView.as_view(), name="point_list"),
    path("restore-points/<int:pk>/", views.PointDetailView.as_view(), name="point_detail"),
    path("restore-points/<int:pk>/disks/<str:key>/restore/", views.PointDiskRestoreView.as_view(),
         name="point_disk_restore"),
    path("restore-points/<int:pk>/<slug:action>/", job_views.PointProtectView.as_view(), name="point_protect"),
    path("jobs/", include("backups.jobs.urls")),
    path("device-servers/", include("backups.devices.urls")),
    path("restore/", include("backups.restore.urls")),
]
