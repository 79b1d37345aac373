"""REST API of backup jobs, with the roles of the pages: every role reads; operators run a
job now; administrators create, change and delete jobs and schedules. Every change is
audited (backups/jobs/editing.py); the logic is in the modules beside this one."""
from django.db import transaction
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from sesamweb.accounts.permissions import MANAGE, OPERATE
from sesamweb.audit.log import model_snapshot

from ..models import BackupJob, JobSchedule, RestorePoint
from . import api_serializers as serializers
from .editing import delete_job, delete_schedule, job_saved, schedule_saved
from .retention import JobRetention, preview
from .runs import predict_kind
from .selection import select_vms
from .tasks import queue_job_run

NOT_FOUND = OpenApiResponse(description="No such job")
BAD_REQUEST = OpenApiResponse(description="Invalid input; each field lists its problems")


def _schedules_prefetch():
    return Prefetch("schedules", queryset=JobSchedule.objects.select_related("q_schedule"))


@extend_schema_view(
    retrieve=extend_schema(responses={200: serializers.BackupJobSerializer, 404: NOT_FOUND}),
    create=extend_schema(responses={201: serializers.BackupJobSerializer, 400: BAD_REQUEST}),
    update=extend_schema(responses={200: serializers.BackupJobSerializer, 400: BAD_REQUEST, 404: NOT_FOUND}),
    partial_update=extend_schema(responses={200: serializers.BackupJobSerializer, 400: BAD_REQUEST,
                                            404: NOT_FOUND}),
    destroy=extend_schema(responses={204: None, 404: NOT_FOUND}),
)
class BackupJobViewSet(viewsets.ModelViewSet):
    """Backup jobs: which VMs (chosen or by a rule evaluated at each run), how, to which data
    store, how long to keep, how many at once; with their schedules."""

    serializer_class = serializers.BackupJobSerializer
    filterset_fields = ["enabled", "store", "selection"]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at"]
    operate_actions = {"run"}

    @property
    def write_capability(self):
        return OPERATE if self.action in self.operate_actions else MANAGE

    def get_queryset(self):
        return (BackupJob.objects.select_related("store")
                .prefetch_related("vms", "excluded_vms", "rule_pools", _schedules_prefetch()))

    @transaction.atomic
    def perform_create(self, serializer):
        job_saved(serializer.save(), user=self.request.user)

    @transaction.atomic
    def perform_update(self, serializer):
        before = model_snapshot(serializer.instance)
        job_saved(serializer.save(), before=before, user=self.request.user)

    def perform_destroy(self, instance):
        delete_job(instance, user=self.request.user)

    @extend_schema(responses={200: serializers.JobVmSerializer(many=True), 404: NOT_FOUND})
    @action(detail=True, filter_backends=[])
    def preview(self, request, pk=None):
        """The VMs the job's selection picks now (a new VM matching a rule appears here)."""
        return self._page(select_vms(self.get_object()), serializers.JobVmSerializer)

    @extend_schema(responses={200: serializers.PredictionSerializer(many=True), 400: BAD_REQUEST, 404: NOT_FOUND},
                   parameters=[OpenApiParameter("schedule", int, description="Predict for a run by this schedule")])
    @action(detail=True, filter_backends=[])
    def prediction(self, request, pk=None):
        """Per selected VM: whether the next run makes a full or an incremental backup, and why."""
        job = self.get_object()
        schedule = None
        wanted = request.query_params.get("schedule", "")
        if wanted:
            schedule = job.schedules.filter(pk=int(wanted)).first() if wanted.isdigit() else None
            if schedule is None:
                return Response({"schedule": ["This job has no such schedule."]}, status=status.HTTP_400_BAD_REQUEST)
        vms = self.paginate_queryset(select_vms(job))
        rows = []
        for vm in vms:
            kind, reason = predict_kind(job, vm.uuid, schedule=schedule)
            rows.append({"vm": vm, "kind": kind, "reason": reason})
        return self.get_paginated_response(serializers.PredictionSerializer(rows, many=True).data)

    @extend_schema(parameters=[serializers.RetentionQuerySerializer],
                   responses={200: serializers.PrunePreviewSerializer, 400: BAD_REQUEST, 404: NOT_FOUND})
    @action(detail=True, url_path="prune-preview", pagination_class=None, filter_backends=[])
    def prune_preview(self, request, pk=None):
        """Which of the job's restore points a policy (the job's, or the one in the query) keeps
        and removes now, with the reasons; nothing is changed."""
        job = self.get_object()
        query = serializers.RetentionQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        current = {name: getattr(job, name) for name in serializers.RetentionQuerySerializer().fields}
        policy = {**current, **query.validated_data}
        proposed = BackupJob(**policy)
        plan = preview(job, JobRetention.of(proposed))
        points = list(RestorePoint.objects.filter(job=job, store=job.store).order_by("-taken_at"))
        removed = set(plan.remove)
        body = {
            "policy": policy,
            "keep": [p for p in points if p.point_id in plan.keep],
            "remove": [p for p in points if p.point_id in removed],
            "deleted_vms": [{"vm_uuid": uuid, "deleted_at": deleted_at, "kept_until": kept_until}
                            for uuid, (deleted_at, kept_until) in sorted(plan.deleted_vms.items())],
        }
        return Response(serializers.PrunePreviewSerializer(body, context={"plan": plan}).data)

    @extend_schema(request=None, responses={202: serializers.RunQueuedSerializer, 404: NOT_FOUND})
    @action(detail=True, methods=["post"], filter_backends=[])
    def run(self, request, pk=None):
        """Run now: the run starts on a worker; follow it under /api/runs/?job=<id>."""
        job = self.get_object()
        task_id = queue_job_run(job, user=request.user)
        return Response({"job": job.pk, "task_id": task_id, "detail": f"a run of job {job.name} was queued"},
                        status=status.HTTP_202_ACCEPTED)

    def _page(self, queryset, serializer_class):
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)


@extend_schema_view(
    retrieve=extend_schema(responses={200: serializers.JobScheduleSerializer, 404: NOT_FOUND}),
    create=extend_schema(responses={201: serializers.JobScheduleSerializer, 400: BAD_REQUEST}),
    update=extend_schema(responses={200: serializers.JobScheduleSerializer, 400: BAD_REQUEST, 404: NOT_FOUND}),
    partial_update=extend_schema(responses={200: serializers.JobScheduleSerializer, 400: BAD_REQUEST,
                                            404: NOT_FOUND}),
    destroy=extend_schema(responses={204: None, 404: NOT_FOUND}),
)
class JobScheduleViewSet(viewsets.ModelViewSet):
    """Schedules of jobs (?job=<id>): a cron expression in a time zone, kept in step with the
    django-q2 schedule that fires it. Administrators change them."""

    serializer_class = serializers.JobScheduleSerializer
    filterset_fields = ["job", "enabled", "kind"]
    write_capability = MANAGE

    def get_queryset(self):
        return JobSchedule.objects.select_related("job", "q_schedule")

    @transaction.atomic
    def perform_create(self, serializer):
        schedule_saved(serializer.save(), user=self.request.user)

    @transaction.atomic
    def perform_update(self, serializer):
        before = model_snapshot(serializer.instance)
        schedule_saved(serializer.save(), before=before, user=self.request.user)

    def perform_destroy(self, instance):
        delete_schedule(instance, user=self.request.user)
