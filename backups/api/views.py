from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from sesamweb.accounts.permissions import OPERATE

from ..choices import RunStatus, Trigger
from ..filters import BackupRunFilterSet, DataStoreFilterSet, RestorePointFilterSet, VmBackupFilterSet
from ..jobs.api_serializers import ProtectSerializer
from ..jobs.editing import set_protected
from ..jobs.runs import JobRunError, cancel_vm, retry_failed
from ..models import BackupRun, DataStore, PoolCleanup, RestorePoint, VmBackup
from ..pool_cleanup import CleanupAlreadyRunning, request_cleanup
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


CONFLICT = OpenApiResponse(description="Not possible in the object's present state; detail says why")
NOT_FOUND = OpenApiResponse(description="Not found")


class BackupRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Backup runs (of a job: ?job=<id>) with their VM backups and numbers; operators may
    cancel one, or retry the VMs of a job's run that failed."""

    serializer_class = serializers.BackupRunSerializer
    filterset_class = BackupRunFilterSet
    write_capability = OPERATE

    def get_queryset(self):
        return BackupRun.objects.select_related("requested_by", "job").prefetch_related("vm_backups__store")

    @extend_schema(request=None, responses={200: serializers.BackupRunSerializer, 404: NOT_FOUND, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        if run.status in RunStatus.finished():
            return Response({"detail": f"{run} has already finished."}, status=status.HTTP_409_CONFLICT)
        cancel_run(run, user=request.user)
        return Response(self.get_serializer(self.get_queryset().get(pk=run.pk)).data)

    @extend_schema(request=None, responses={202: serializers.BackupRunSerializer, 404: NOT_FOUND, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """A new run of the job for the VMs of this run that failed, were skipped or cancelled."""
        try:
            retry = retry_failed(self.get_object(), user=request.user)
        except JobRunError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(self.get_queryset().get(pk=retry.pk)).data,
                        status=status.HTTP_202_ACCEPTED)


class VmBackupViewSet(viewsets.ReadOnlyModelViewSet):
    """The backup of one VM within a run; operators may cancel it alone."""

    serializer_class = serializers.VmBackupSerializer
    filterset_class = VmBackupFilterSet
    ordering_fields = ["created_at", "vm_name"]
    write_capability = OPERATE

    def get_queryset(self):
        return VmBackup.objects.select_related("store")

    @extend_schema(request=None, responses={200: serializers.VmBackupSerializer, 404: NOT_FOUND, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """A queued VM is cancelled at once, a running one at its next progress step; the run's
        other VMs go on."""
        vm_backup = self.get_object()
        if vm_backup.status in RunStatus.finished():
            return Response({"detail": f"the backup of {vm_backup.vm_name} has already finished."},
                            status=status.HTTP_409_CONFLICT)
        cancel_vm(vm_backup, user=request.user)
        return Response(self.get_serializer(self.get_queryset().get(pk=vm_backup.pk)).data)


class RestorePointViewSet(viewsets.ReadOnlyModelViewSet):
    """Restore points; operators protect one by hand (never pruned, never deleted) or lift it."""

    serializer_class = serializers.RestorePointSerializer
    filterset_class = RestorePointFilterSet
    ordering_fields = ["taken_at", "vm_name", "bytes_stored"]
    write_capability = OPERATE

    def get_queryset(self):
        return RestorePoint.objects.select_related("store", "job")

    @extend_schema(request=ProtectSerializer,
                   responses={200: serializers.RestorePointSerializer, 400: OpenApiResponse(description="Invalid note"),
                              404: NOT_FOUND})
    @action(detail=True, methods=["post"])
    def protect(self, request, pk=None):
        point = self.get_object()
        form = ProtectSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        set_protected(point, True, note=form.validated_data["note"], user=request.user)
        return Response(self.get_serializer(point).data)

    @extend_schema(request=None, responses={200: serializers.RestorePointSerializer, 404: NOT_FOUND})
    @action(detail=True, methods=["post"])
    def unprotect(self, request, pk=None):
        point = self.get_object()
        set_protected(point, False, user=request.user)
        return Response(self.get_serializer(point).data)


class PoolCleanupViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Clean-up passes over pools (?pool=<id>), newest first; every role reads. POST {"pool": id}
    asks for a pass now (operators+): 202, queued on a worker; 409 while one is queued or running."""

    serializer_class = serializers.PoolCleanupSerializer
    write_capability = OPERATE
    filterset_fields = ["pool", "status", "trigger"]

    def get_queryset(self):
        return PoolCleanup.objects.select_related("pool", "requested_by")

    @extend_schema(responses={202: serializers.PoolCleanupSerializer, 400: OpenApiResponse(description="Bad request"),
                              409: CONFLICT})
    def create(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            cleanup = request_cleanup(form.validated_data["pool"], request.user)
        except CleanupAlreadyRunning as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(cleanup).data, status=status.HTTP_202_ACCEPTED)
