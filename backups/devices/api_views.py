"""REST API of device servers. Every role reads device servers; administrators create and
revoke registration tokens, revoke device servers, change max_streams and move data stores.
Registration itself is authenticated by its one-time token, not by a user."""
from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from sesamweb.accounts.permissions import MANAGE
from sesamweb.audit.log import model_snapshot, record_event
from sesamweb.audit.choices import AuditAction

from ..models import DataStore
from . import api_serializers as serializers
from .models import DeviceServer, RegistrationToken
from .registration import RegistrationError, issue_token, register, revoke_server, revoke_token
from .stores import AssignmentError, assign_store


class DeviceServerViewSet(mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Device servers: their heartbeat, version, load, running streams and stores."""

    serializer_class = serializers.DeviceServerSerializer
    queryset = DeviceServer.objects.prefetch_related("stores")
    search_fields = ["name", "site"]
    http_method_names = ["get", "patch", "post", "head", "options"]

    @transaction.atomic
    def perform_update(self, serializer):
        before = model_snapshot(serializer.instance)
        server = serializer.save()
        record_event(AuditAction.UPDATE, target=server, actor=self.request.user, before=before,
                     after=model_snapshot(server), message=f"device server {server.name} changed")

    @extend_schema(request=None, responses={200: serializers.DeviceServerSerializer,
                                            409: OpenApiResponse(description="Revoked already")})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        server = self.get_object()
        if not revoke_server(server, user=request.user):
            return Response({"detail": f"device server {server.name} was revoked already"}, status=status.HTTP_409_CONFLICT)
        server.refresh_from_db()
        return Response(self.get_serializer(server).data)

    @extend_schema(request=serializers.StoreAssignmentSerializer, responses={200: serializers.DeviceServerSerializer})
    @action(detail=True, methods=["post"], url_path="assign-store")
    def assign_store(self, request, pk=None):
        server = self.get_object()
        form = serializers.StoreAssignmentSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        store = DataStore.objects.filter(pk=form.validated_data["store"]).first()
        if store is None:
            raise ValidationError({"store": ["No such data store."]})
        try:
            assign_store(store, server, user=request.user)
        except AssignmentError as exc:
            raise ValidationError({"store": [str(exc)]}) from None
        return Response(self.get_serializer(self.get_queryset().get(pk=server.pk)).data)


class RegistrationTokenViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """One-time registration tokens (administrators only; the token text is returned once)."""

    serializer_class = serializers.RegistrationTokenSerializer
    queryset = RegistrationToken.objects.all()
    read_capability = MANAGE

    @extend_schema(request=serializers.RegistrationTokenSerializer,
                   responses={201: serializers.NewRegistrationTokenSerializer})
    def create(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            row, token = issue_token(data["name"], site=data.get("site", ""), user=request.user, hours=data.get("hours"))
        except RegistrationError as exc:
            raise ValidationError({"name": [str(exc)]}) from None
        body = serializers.NewRegistrationTokenSerializer(row).data
        body["token"] = token
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: serializers.RegistrationTokenSerializer,
                                            409: OpenApiResponse(description="Used or revoked already")})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        row = self.get_object()
        if not revoke_token(row, user=request.user):
            return Response({"detail": f"the token is {row.state()}"}, status=status.HTTP_409_CONFLICT)
        row.refresh_from_db()
        return Response(self.get_serializer(row).data)


class RegisterView(APIView):
    """A device server registers itself with its one-time token and its public key."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(request=serializers.RegistrationSerializer,
                   responses={201: serializers.RegisteredSerializer,
                              403: OpenApiResponse(description="Token unknown, used, expired, revoked or for another name")})
    def post(self, request):
        form = serializers.RegistrationSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            server = register(**form.validated_data)
        except RegistrationError as exc:
            return Response({"detail": f"registration refused: {exc}"}, status=status.HTTP_403_FORBIDDEN)
        return Response(serializers.RegisteredSerializer(server).data, status=status.HTTP_201_CREATED)
