from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("pools", views.PoolViewSet, basename="pool")
router.register("hosts", views.HostViewSet, basename="host")
router.register("srs", views.StorageRepositoryViewSet, basename="sr")
router.register("networks", views.NetworkViewSet, basename="network")
router.register("vms", views.VMViewSet, basename="vm")

urlpatterns = router.urls
