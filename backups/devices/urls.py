"""Device server pages, under backups/device-servers/ in the "backups" namespace."""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.DeviceServerListView.as_view(), name="device_server_list"),
    path("tokens/add/", views.RegistrationTokenCreateView.as_view(), name="device_token_add"),
    path("tokens/<int:pk>/revoke/", views.RegistrationTokenRevokeView.as_view(), name="device_token_revoke"),
    path("<int:pk>/", views.DeviceServerDetailView.as_view(), name="device_server_detail"),
    path("<int:pk>/revoke/", views.DeviceServerRevokeView.as_view(), name="device_server_revoke"),
    path("<int:pk>/stores/", views.StoreAssignView.as_view(), name="device_server_assign_store"),
]
