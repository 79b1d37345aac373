from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ..delivery import send_test
from ..models import Channel, Delivery, Rule
from ..services import delete_channel, delete_rule, record_test, save_channel, save_rule
from .serializers import ChannelSerializer, DeliverySerializer, RuleSerializer


class ChannelViewSet(viewsets.ModelViewSet):
    """Notification channels (secrets write-only); `test` sends one message now."""

    queryset = Channel.objects.select_related("fallback")
    serializer_class = ChannelSerializer
    filterset_fields = ["kind", "enabled"]
    search_fields = ["name"]

    def perform_create(self, serializer):
        form = serializer.validated_data["form"]
        serializer.instance = save_channel(form.apply(Channel()), secret=form.secret(), user=self.request.user)

    def perform_update(self, serializer):
        form = serializer.validated_data["form"]
        serializer.instance = save_channel(form.apply(serializer.instance), secret=form.secret(),
                                           user=self.request.user)

    def perform_destroy(self, instance):
        delete_channel(instance, user=self.request.user)

    @extend_schema(request=None, responses=DeliverySerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None, **kwargs):
        channel = self.get_object()
        delivery = send_test(channel)
        record_test(channel, delivery, user=request.user)
        return Response(DeliverySerializer(delivery).data)


class RuleViewSet(viewsets.ModelViewSet):
    queryset = Rule.objects.prefetch_related("channels")
    serializer_class = RuleSerializer

    def _save(self, serializer, instance=None):
        form = serializer.validated_data["form"]
        serializer.instance = save_rule(form.save(commit=False), channels=form.cleaned_data["channels"],
                                        user=self.request.user)

    def perform_create(self, serializer):
        self._save(serializer)

    def perform_update(self, serializer):
        self._save(serializer)

    def perform_destroy(self, instance):
        delete_rule(instance, user=self.request.user)


class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deliveries with every attempt and its outcome, newest first."""

    queryset = Delivery.objects.select_related("event", "channel").prefetch_related("attempt_log")
    serializer_class = DeliverySerializer
    filterset_fields = ["status", "channel", "is_test"]
