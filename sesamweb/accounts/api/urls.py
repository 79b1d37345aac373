from rest_framework.routers import DefaultRouter

from .views import ApiTokenViewSet, UserViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("users", UserViewSet, basename="user")
router.register("tokens", ApiTokenViewSet, basename="apitoken")
urlpatterns = router.urls
