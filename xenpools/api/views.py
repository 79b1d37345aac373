from dataclasses import asdict

from django.db.models import Count, Prefetch, Q
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.reverse import reverse

from sesamweb.accounts.permissions import MANAGE, OPERATE

from ..connection import PoolCertificateUnknown, PoolConnection, PoolError
from ..filters import HostFilterSet, NetworkFilterSet, PoolFilterSet, StorageRepositoryFilterSet, VMFilterSet
from ..models import VIF, VM, Host, Network, Pool, StorageRepository, VirtualDisk
from ..registration import delete_pool, register_pool, update_pool
from ..sync import SyncAlreadyRunning, request_sync, sync_state
from . import serializers


def _probe_or_400(address, username, password, fingerprint):
    """Run the connection test; turn its errors into 400 answers an admin can act on."""
    try:
        return PoolConnection.probe(address, username, password, fingerprint=fingerprint or None)
    except PoolCertificateUnknown as exc:
        raise ValidationError({"fingerprint": [str(exc)], "certificate_fingerprint": exc.fingerprint}) from None
    except (PoolError, ValueError) as exc:
        raise ValidationError({"connection": [str(exc)]}) from None


class PoolViewSet(viewsets.ModelViewSet):
    """Pools: administrators create, change and delete; operators may sync; all roles read."""

    serializer_class = serializers.PoolSerializer
    filterset_class = PoolFilterSet
    ordering_fields = ["name", "health", "last_sync"]
    search_fields = ["name", "address", "pool_label"]

    @property
    def write_capability(self):
        return OPERATE if self.action == "sync" else MANAGE

    def get_queryset(self):
        return Pool.objects.annotate(vm_count=Count("vms", filter=Q(vms__removed_at__isnull=True, vms__is_snapshot=False)))

    def perform_create(self, serializer):
        data = serializer.validated_data
        probe = _probe_or_400(data["address"], data.get("username", "root"), data["password"], data.get("fingerprint"))
        serializer.instance = register_pool(data["name"], data["address"], data.get("username", "root"),
                                            data["password"], probe, sync=False)
        request_sync(serializer.instance, self.request.user)       # the first sync, on a worker

    def perform_update(self, serializer):
        pool, data = serializer.instance, serializer.validated_data
        username = data.get("username", pool.username)
        password = data.get("password") or pool.get_password()
        fingerprint = data.get("fingerprint") or pool.fingerprints.get(pool.master_address)
        probe = _probe_or_400(pool.url, username, password, fingerprint)
        update_pool(pool, name=data.get("name", pool.name), username=username, password=data.get("password"),
                    probe=probe, limits={f: data[f] for f in ("streams_per_host", "snapshots_at_once") if f in data})

    def perform_destroy(self, instance):
        delete_pool(instance)

    @extend_schema(request=serializers.ConnectionTestSerializer, responses=dict)
    @action(detail=False, methods=["post"])
    def test(self, request):
        """Test an address and credentials without saving anything."""
        form = serializers.ConnectionTestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        probe = _probe_or_400(data["address"], data["username"], data["password"], data.get("fingerprint"))
        return Response(asdict(probe))

    @extend_schema(request=None, responses={202: serializers.SyncStateSerializer, 409: dict})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """Queue a full inventory sync on a worker; follow it at `status_url` (sync-status)."""
        pool = self.get_object()
        try:
            request_sync(pool, request.user)
        except SyncAlreadyRunning as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        status_url = reverse("pool-sync-status", args=[pool.pk], request=request)
        pool.refresh_from_db()
        return Response({**sync_state(pool), "status_url": status_url}, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": status_url})

    @extend_schema(responses=serializers.SyncStateSerializer)
    @action(detail=True, methods=["get"], url_path="sync-status", url_name="sync-status")
    def sync_status(self, request, pk=None):
        """The pool's last or current sync: state, phase, objects read, outcome."""
        return Response(sync_state(self.get_object()))


class HostViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Host.objects.all()
    serializer_class = serializers.HostSerializer
    filterset_class = HostFilterSet


class StorageRepositoryViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = StorageRepository.objects.prefetch_related("hosts")
    serializer_class = serializers.StorageRepositorySerializer
    filterset_class = StorageRepositoryFilterSet


class NetworkViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Network.objects.all()
    serializer_class = serializers.NetworkSerializer
    filterset_class = NetworkFilterSet


class VMViewSet(viewsets.ReadOnlyModelViewSet):
    filterset_class = VMFilterSet
    search_fields = ["name", "uuid"]

    def get_queryset(self):
        queryset = VM.objects.select_related("host")
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(
                Prefetch("disks", queryset=VirtualDisk.objects.select_related("vdi")),
                Prefetch("vifs", queryset=VIF.objects.all()),
            )
        return queryset.order_by("name", "pk")

    def get_serializer_class(self):
        return serializers.VMDetailSerializer if self.action == "retrieve" else serializers.VMSerializer
