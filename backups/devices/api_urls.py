from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api_views

router = SimpleRouter()
router.register("device-servers", api_views.DeviceServerViewSet, basename="device-server")
router.register("device-registration-tokens", api_views.RegistrationTokenViewSet, basename="device-registration-token")

urlpatterns = [
    path("device-servers/register/", api_views.RegisterView.as_view(), name="device-server-register"),
    *router.urls,
]
