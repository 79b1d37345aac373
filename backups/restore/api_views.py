"""REST API of restores: request (or only validate) a plan, follow and cancel runs, read a
restore point's VM, restore or download one disk. Operators and administrators restore;
every role reads; downloads need OPERATE too (they hand out a disk's content)."""
import re

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from sesamweb.accounts.permissions import OPERATE, VIEW
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event

from ..api.views import CONFLICT, NOT_FOUND
from ..choices import RunStatus, Trigger
from ..formats.xva import XvaError
from ..models import RestorePoint
from ..models_restore import RestoreRun
from ..repository import RepositoryError
from . import api_serializers as serializers
from .download import DownloadError, disk_download
from .export import point_xva
from .plan import (
    RestorePlanError,
    cancel_restore,
    describe_point,
    find_point,
    request_disk_restore,
    request_restore,
    validate_plan,
)


def problems_response(problems):
    """400 with each problem under its field (as the wizard shows them) and as a list."""
    fields = {}
    for problem in problems:
        fields.setdefault(problem.field, []).append(problem.message)
    fields["problems"] = serializers.PlanProblemSerializer(problems, many=True).data
    return Response(fields, status=status.HTTP_400_BAD_REQUEST)


class RestoreRunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Restores: POST a plan (202, queued), GET their status and progress, cancel one."""

    read_capability = VIEW
    write_capability = OPERATE
    serializer_class = serializers.RestoreRunSerializer
    ordering_fields = ["created_at"]
    filterset_fields = ["status", "kind", "target_pool", "source_vm_uuid"]

    def get_queryset(self):
        return RestoreRun.objects.select_related("requested_by")

    def _plan(self, request):
        form = serializers.RestoreRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return form.to_plan()

    @extend_schema(request=serializers.RestoreRequestSerializer, responses={202: serializers.RestoreRunSerializer})
    def create(self, request):
        try:
            run = request_restore(self._plan(request), request.user, trigger=Trigger.API)
        except RestorePlanError as exc:
            return problems_response(exc.problems)
        return Response(self.get_serializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=serializers.RestoreRequestSerializer,
                   responses={200: serializers.PlanProblemSerializer(many=True)})
    @action(detail=False, methods=["post"])
    def validate(self, request):
        """The plan's problems, without starting anything (200 with [] when it can run)."""
        try:
            problems = validate_plan(self._plan(request))
        except RestorePlanError as exc:
            problems = exc.problems
        return Response(serializers.PlanProblemSerializer(problems, many=True).data)

    @extend_schema(request=serializers.DiskRestoreRequestSerializer, responses={202: serializers.RestoreRunSerializer})
    @action(detail=False, methods=["post"])
    def disk(self, request):
        """Restore one disk of a point as a new VDI on an SR."""
        form = serializers.DiskRestoreRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            point = find_point(data["point"], data.get("store"))
            run = request_disk_restore(point, data["disk"], data["sr"], request.user,
                                       name=data.get("name", ""), trigger=Trigger.API)
        except RestorePlanError as exc:
            return problems_response(exc.problems)
        return Response(self.get_serializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: serializers.RestoreRunSerializer, 404: NOT_FOUND, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        if run.status in RunStatus.finished():
            return Response({"detail": f"{run} has already finished."}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(cancel_restore(run, user=request.user)).data)


class RestorePointDetailsView(APIView):
    """The VM a restore point holds (from its manifest): disks, interfaces, memory, vCPUs."""

    read_capability = VIEW

    @extend_schema(responses=serializers.PointDetailsSerializer)
    def get(self, request, pk):
        point = get_object_or_404(RestorePoint.objects.select_related("store"), pk=pk)
        try:
            details = describe_point(point)
        except (RepositoryError, XvaError, OSError) as exc:
            raise ValidationError({"point": [f"cannot read the restore point: {exc}"]}) from None
        return Response(serializers.PointDetailsSerializer(details).data)


RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def skip_to(blocks, start: int, stop: int):
    """The bytes [start, stop) of a generated stream: a resumed download gets the same file
    from where it broke off (the stream is produced again, and the part before is dropped)."""
    position = 0
    for block in blocks:
        end = position + len(block)
        if end > start and position < stop:
            yield block[max(0, start - position):min(len(block), stop - position)]
        position = end
        if position >= stop:
            return


def ranged_download(request, *, blocks, length, filename, content_type, etag):
    """A streamed file that honours a single `Range: bytes=N-[M]` (with If-Range), so that a
    broken download of a large disk or XVA resumes instead of starting over."""
    start, stop, status_code = 0, length, 200
    wanted = request.headers.get("Range", "").strip()
    if wanted and request.headers.get("If-Range", etag) == etag:
        match = RANGE.match(wanted)
        if not match or int(match[1]) >= length:
            response = StreamingHttpResponse([], status=416)
            response["Content-Range"] = f"bytes */{length}"
            return response
        start = int(match[1])
        stop = min(int(match[2]) + 1, length) if match[2] else length
        status_code = 206
    response = StreamingHttpResponse(skip_to(blocks, start, stop), status=status_code, content_type=content_type)
    response["Content-Length"] = str(stop - start)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    if status_code == 206:
        response["Content-Range"] = f"bytes {start}-{stop - 1}/{length}"
    return response


class DownloadView(APIView):
    read_capability = OPERATE

    def perform_content_negotiation(self, request, force=False):
        # ?format= names the file format here, not a DRF renderer; errors still go out as JSON.
        return JSONRenderer(), JSONRenderer.media_type


class DiskDownloadView(DownloadView):
    """One disk as a raw or VHD file, streamed from the verified chunks (audited); resumable."""

    @extend_schema(parameters=[OpenApiParameter("format", str, enum=["raw", "vhd"])],
                   responses={(200, "application/octet-stream"): bytes, (206, "application/octet-stream"): bytes})
    def get(self, request, pk, key):
        point = get_object_or_404(RestorePoint.objects.select_related("store"), pk=pk)
        fmt = request.query_params.get("format", "raw")
        try:
            download = disk_download(point, key, fmt)
        except DownloadError as exc:
            raise ValidationError({"detail": [str(exc)]}) from None
        except (RepositoryError, OSError) as exc:
            raise ValidationError({"detail": [f"cannot read the restore point: {exc}"]}) from None
        response = ranged_download(request, blocks=download.blocks, length=download.length,
                                   filename=download.filename, content_type=download.content_type,
                                   etag=f'"{point.point_id}/{key}.{fmt}"')
        if response.status_code == 200:     # resuming a download is not another one
            record_event(AuditAction.RESTORE, target=point, actor=request.user,
                         message=f"disk {key} of {point.vm_name} ({point.point_id}) downloaded as {fmt}")
        return response


class XvaExportView(DownloadView):
    """The restore point as a standard XVA file (`xe vm-import`), streamed; resumable (audited)."""

    @extend_schema(parameters=[OpenApiParameter("checksum", str, enum=["sha1", "xxhash"])],
                   responses={(200, "application/octet-stream"): bytes, (206, "application/octet-stream"): bytes})
    def get(self, request, pk):
        point = get_object_or_404(RestorePoint.objects.select_related("store"), pk=pk)
        checksum = request.query_params.get("checksum", "sha1")
        if checksum not in ("sha1", "xxhash"):
            raise ValidationError({"checksum": ["sha1 or xxhash"]})
        try:
            export = point_xva(point, checksum=checksum)
        except (RepositoryError, XvaError, OSError) as exc:
            raise ValidationError({"detail": [f"cannot read the restore point: {exc}"]}) from None
        response = ranged_download(request, blocks=export.blocks, length=export.length, filename=export.filename,
                                   content_type="application/octet-stream", etag=f'"{point.point_id}.{checksum}.xva"')
        if response.status_code == 200:     # resuming a download is not another one
            record_event(AuditAction.RESTORE, target=point, actor=request.user,
                         message=f"{point.vm_name} ({point.point_id}) downloaded as an XVA file")
        return response
