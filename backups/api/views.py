from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from sesamweb.accounts.permissions import OPERATE

from ..choices import RunStatus, Trigger
from ..filters import BackupRunFilterSet, DataStoreFilterSet, RestorePointFilterSet
from ..models import BackupRun, DataStore, RestorePoint
from ..repository import RepositoryError
from ..services import BackupRequestError, cancel_run, queue_run, request_backup
from ..stores import create_store
from . import serializers


class DataStoreViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Data stores: every role reads; administrators create (secrets are write-only)."""

    serializer_class = serializers.DataStoreSerializer
    filterset_class = DataStoreFilterSet
    search_fields = ["name"]

    def get_queryset(self):
        return DataStore.objects.annotate(restore_point_count=Count("restore_points"),
                                          bytes_stored=Coalesce(Sum("restore_points__bytes_stored"), 0))

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        if DataStore.objects.filter(name=data["name"]).exists():
            raise ValidationError({"name": ["A data store with this name exists already."]})
        try:
            store = create_store(**data)
        except (ValueError, RepositoryError, OSError) as exc:
            raise ValidationError({"detail": [f"The data store could not be created: {exc}"]}) from None
        serializer.instance = self.get_queryset().get(pk=store.pk)


class BackupRequestViewSet(viewsets.GenericViewSet):
    """POST a backup of one VM to a data store: queued on the store's workers (operators+)."""

    serializer_class = serializers.BackupRequestSerializer
    write_capability = OPERATE

    @extend_schema(request=serializers.BackupRequestSerializer, responses={202: serializers.BackupRunSerializer})
    def create(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            run = request_backup(vm=data["vm"], store=data["store"], method=data["method"],
                                 incremental=data["incremental"], trigger=Trigger.API, user=request.user,
                                 **data.get("options", {}))
        except BackupRequestError as exc:
            raise ValidationError({"detail": [str(exc)]}) from None
        queue_run(run)
        run = BackupRun.objects.prefetch_related("vm_backups__store").get(pk=run.pk)
        return Response(serializers.BackupRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class BackupRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Backup runs with their VM backups and numbers; operators may cancel one."""

    serializer_class = serializers.BackupRunSerializer
    filterset_class = BackupRunFilterSet
    write_capability = OPERATE

    def get_queryset(self):
        return BackupRun.objects.select_related("requested_by").prefetch_related("vm_backups__store")

    @extend_schema(request=None, responses=serializers.BackupRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        if run.status in RunStatus.finished():
            return Response({"detail": f"{run} has already finished."}, status=status.HTTP_409_CONFLICT)
        cancel_run(run, user=request.user)
        return Response(self.get_serializer(self.get_queryset().get(pk=run.pk)).data)


class RestorePointViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.RestorePointSerializer
    filterset_class = RestorePointFilterSet
    ordering_fields = ["taken_at", "vm_name", "bytes_stored"]

    def get_queryset(self):
        return RestorePoint.objects.select_related("store")
