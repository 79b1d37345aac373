from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("", views.AuditEventListView.as_view(), name="event_list"),
    path("export.csv", views.AuditExportView.as_view(), name="export"),
    path("export.json", views.AuditExportView.as_view(export_format="json"), name="export_json"),
    path("verify/", views.VerifyChainView.as_view(), name="verify"),
    path("<int:pk>/", views.AuditEventDetailView.as_view(), name="event_detail"),
]
