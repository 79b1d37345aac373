from django.urls import path

from . import views

urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("dashboard/summary/", views.DashboardSummaryView.as_view(), name="dashboard_summary"),
]
