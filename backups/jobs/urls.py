"""Job pages, under backups/jobs/ in the "backups" namespace (included by backups/urls.py)."""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.JobListView.as_view(), name="job_list"),
    path("add/", views.JobFormView.as_view(), name="job_add"),
    path("selection-preview/", views.SelectionPreviewView.as_view(), name="job_selection_preview"),
    path("schedule-preview/", views.SchedulePreviewView.as_view(), name="job_schedule_preview"),
    path("<int:pk>/", views.JobDetailView.as_view(), name="job_detail"),
    path("<int:pk>/edit/", views.JobFormView.as_view(), name="job_edit"),
    path("<int:pk>/delete/", views.JobDeleteView.as_view(), name="job_delete"),
    path("<int:pk>/enable/", views.JobEnableView.as_view(), name="job_enable"),
    path("<int:pk>/run/", views.JobRunNowView.as_view(), name="job_run"),
    path("<int:pk>/latest-run/", views.JobLatestRunView.as_view(), name="job_latest_run"),
    path("<int:pk>/retention/", views.RetentionPreviewView.as_view(), name="job_retention"),
    path("<int:pk>/retention/save/", views.RetentionSaveView.as_view(), name="job_retention_save"),
    path("<int:pk>/schedules/add/", views.ScheduleFormView.as_view(), name="job_schedule_add"),
    path("<int:pk>/schedules/<int:schedule_pk>/", views.ScheduleFormView.as_view(), name="job_schedule_edit"),
    path("<int:pk>/schedules/<int:schedule_pk>/delete/", views.ScheduleDeleteView.as_view(),
         name="job_schedule_delete"),
]
