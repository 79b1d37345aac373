"""The restore wizard under /backups/restore/ (namespace "backups")."""
from django.urls import path

from . import replication_views, views

urlpatterns = [
    path("", views.RestoreVmView.as_view(), name="restore"),
    path("point/", views.RestorePointView.as_view(), name="restore_point"),
    path("target/", views.RestoreTargetView.as_view(), name="restore_target"),
    path("options/", views.RestoreOptionsView.as_view(), name="restore_options"),
    path("review/", views.RestoreReviewView.as_view(), name="restore_review"),
    path("runs/<int:pk>/", views.RestoreRunView.as_view(), name="restore_run"),
    path("runs/<int:pk>/cancel/", views.RestoreRunCancelView.as_view(), name="restore_run_cancel"),
    path("replication/", replication_views.ReplicationPolicyListView.as_view(), name="replication_list"),
    path("replication/add/", replication_views.ReplicationPolicyEditView.as_view(), name="replication_add"),
    path("replication/<int:pk>/", replication_views.ReplicationPolicyEditView.as_view(), name="replication_edit"),
    path("replication/<int:pk>/remove/", replication_views.ReplicationPolicyRemoveView.as_view(),
         name="replication_remove"),
]
