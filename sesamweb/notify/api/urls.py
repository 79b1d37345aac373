from rest_framework.routers import DefaultRouter

from .views import ChannelViewSet, DeliveryViewSet, RuleViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("notify/channels", ChannelViewSet, basename="notify-channel")
router.register("notify/rules", RuleViewSet, basename="notify-rule")
router.register("notify/deliveries", DeliveryViewSet, basename="notify-delivery")
urlpatterns = router.urls
