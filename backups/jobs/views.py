"""Job pages: list, create / edit, detail (schedules, missed runs, next-run prediction, recent
runs, Run now), schedules, the retention preview, and the live previews the forms call.
Thin views: the work is done by editing (audited changes), selection, schedules, runs and
retention."""
from django.contrib import messages
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import ListView

from sesamweb.accounts.permissions import MANAGE, OPERATE, CapabilityRequiredMixin
from sesamweb.accounts.roles import user_can
from sesamweb.audit.log import model_snapshot

from ..choices import RunStatus
from ..models import BackupJob, BackupRun, JobSchedule, RestorePoint, VmBackup
from ..services import add_run_totals
from . import editing, schedules
from .choices import WEEKDAYS
from .forms import BackupJobForm, ProtectForm, RetentionForm, ScheduleForm, SelectionPreviewForm
from .retention import preview as retention_preview
from .prediction import predict
from .runs import JobRunError, cancel_vm, retry_failed
from .selection import select_vms, selection_summary
from .tasks import queue_job_run

PREVIEW_LIMIT = 200          # VMs listed by the selection preview
PREDICTION_LIMIT = 50        # VMs whose next backup kind the job page predicts
RECENT_RUNS = 20


def describe_rpo(delta):
    if delta is None:
        return ""
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours >= 48 and hours % 24 == 0 else f"{hours:g} hours"


def _last_runs(jobs):
    """{job id: its newest run} in two queries, however many jobs."""
    newest = BackupRun.objects.filter(job=OuterRef("pk")).order_by("-created_at", "-pk").values("pk")[:1]
    ids = dict(BackupJob.objects.filter(pk__in=[j.pk for j in jobs]).annotate(last=Subquery(newest))
               .values_list("pk", "last"))
    runs = BackupRun.objects.in_bulk([pk for pk in ids.values() if pk])
    return {job_id: runs.get(run_id) for job_id, run_id in ids.items()}


def local_time(when):
    """A time in its own (the schedule's) zone, as the schedule form's preview writes it."""
    return when.strftime("%a %Y-%m-%d %H:%M %Z")


def _schedule_rows(job):
    """Each schedule with its description and next five times (in its own zone)."""
    rows = []
    for schedule in job.schedules.all():
        try:
            upcoming = schedules.next_times(schedule.cron, schedule.timezone, 5)
        except (schedules.ScheduleError, ValueError):
            upcoming = []
        caught_up = None
        if schedule.last_missed_at:
            # The run that caught up: the schedule's first run after the first missed slot.
            caught_up = (schedule.runs.filter(created_at__gte=schedule.last_missed_at)
                         .order_by("created_at", "pk").first())
        rows.append({"schedule": schedule, "description": schedules.describe(schedule.cron),
                     "next": [(when, local_time(when)) for when in upcoming],
                     "caught_up": caught_up})
    return rows


def _next_schedule(job):
    """The enabled schedule that fires first (its kind decides full / incremental)."""
    best, best_time = None, None
    for schedule in job.schedules.all():
        if not schedule.enabled:
            continue
        try:
            when = schedules.next_times(schedule.cron, schedule.timezone, 1)[0]
        except (schedules.ScheduleError, ValueError):
            continue
        if best_time is None or when < best_time:
            best, best_time = schedule, when
    return best, best_time


class JobListView(CapabilityRequiredMixin, ListView):
    template_name = "backups/jobs/job_list.html"
    context_object_name = "jobs"

    def get_queryset(self):
        return (BackupJob.objects.select_related("store")
                .prefetch_related("schedules__q_schedule", "rule_pools", "vms", "excluded_vms"))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(can_manage=user_can(self.request.user, MANAGE), **kwargs)
        jobs = context["jobs"]
        last = _last_runs(jobs)
        for job in jobs:
            job.last_run = last.get(job.pk)
            active = [s for s in job.schedules.all() if s.enabled]
            job.schedule_words = [f"{schedules.describe(s.cron)} ({s.timezone})" for s in active]
            # The soonest django-q2 row, shown in its schedule's own zone.
            next_runs = [(s.q_schedule.next_run, s.timezone) for s in active if s.q_schedule_id and s.q_schedule]
            soonest = min(next_runs, default=None, key=lambda pair: pair[0]) if job.enabled else None
            job.next_run = local_time(soonest[0].astimezone(schedules.zone(soonest[1]))) if soonest else ""
            job.rpo_words = describe_rpo(job.rpo())
        return context


@transaction.atomic
def save_job(form, user=None):
    """Save a valid job form (the whole job, or its retention) and audit the change."""
    before = model_snapshot(BackupJob.objects.get(pk=form.instance.pk)) if form.instance.pk else None
    job = form.save()
    editing.job_saved(job, before=before, user=user)
    return job


class JobFormView(CapabilityRequiredMixin, View):
    """Create (no pk) or edit a job."""

    capability = MANAGE
    template_name = "backups/jobs/job_form.html"

    def _job(self, pk):
        return get_object_or_404(BackupJob, pk=pk) if pk else None

    def get(self, request, pk=None):
        job = self._job(pk)
        return render(request, self.template_name, {"form": BackupJobForm(instance=job), "job": job})

    def post(self, request, pk=None):
        job = self._job(pk)
        form = BackupJobForm(request.POST, instance=job)
        if form.is_valid():
            job = save_job(form, user=request.user)
            messages.success(request, f"Backup job {job.name} saved." + ("" if job.schedules.exists() else
                                                                       " Add a schedule so that it runs by itself."))
            return redirect(job)
        return render(request, self.template_name, {"form": form, "job": job}, status=400)


class JobDeleteView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def post(self, request, pk):
        job = get_object_or_404(BackupJob, pk=pk)
        editing.delete_job(job, user=request.user)
        messages.success(request, f"Backup job {job.name} deleted. Its restore points stay on the data store.")
        return redirect("backups:job_list")


class JobEnableView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def post(self, request, pk):
        job = get_object_or_404(BackupJob, pk=pk)
        enabled = request.POST.get("enabled") == "1"
        if job.enabled != enabled:
            with transaction.atomic():
                before = model_snapshot(job)
                job.enabled = enabled
                job.save(update_fields=["enabled", "updated_at"])
                editing.job_saved(job, before=before, user=request.user)    # its schedules follow
        state = "enabled" if enabled else "disabled: its schedules do not fire"
        messages.success(request, f"Backup job {job.name} {state}.")
        return redirect(job)


class JobRunNowView(CapabilityRequiredMixin, View):
    capability = OPERATE

    def post(self, request, pk):
        job = get_object_or_404(BackupJob, pk=pk)
        # The page follows the first run newer than those that exist now (the worker may
        # start it before the page is shown).
        newest = job.runs.order_by("-pk").values_list("pk", flat=True).first() or 0
        queue_job_run(job, user=request.user)       # audited there
        messages.success(request, f"Run of {job.name} queued. Its progress shows below.")
        return redirect(reverse("backups:job_detail", args=[job.pk]) + f"?following={newest}#current-run")


class JobDetailView(CapabilityRequiredMixin, View):
    template_name = "backups/jobs/job_detail.html"

    def get(self, request, pk):
        job = get_object_or_404(BackupJob.objects.select_related("store")
                                .prefetch_related("schedules__q_schedule", "rule_pools", "vms", "excluded_vms"), pk=pk)
        following = request.GET.get("following", "")
        runs = list(job.runs.select_related("schedule", "requested_by").order_by("-created_at", "-pk")[:RECENT_RUNS])
        add_run_totals(runs)
        selected = list(select_vms(job)[:PREDICTION_LIMIT + 1])
        next_schedule, next_time = _next_schedule(job)
        predictions = predict(job, schedule=next_schedule, now=next_time, vms=selected[:PREDICTION_LIMIT])
        return render(request, self.template_name, {
            "job": job, "selection_summary": selection_summary(job), "schedule_rows": _schedule_rows(job),
            "rpo": describe_rpo(job.rpo()), "runs": runs, "predictions": predictions,
            "more_selected": len(selected) > PREDICTION_LIMIT, "next_schedule": next_schedule,
            "next_time": local_time(next_time) if next_time else "",
            "following": following.isdigit(), "known_run": int(following) if following.isdigit() else 0,
            "active_run": next((run for run in runs if not run.is_finished), None),
            "can_manage": user_can(request.user, MANAGE), "can_operate": user_can(request.user, OPERATE),
            "weekday_names": dict(WEEKDAYS),
        })


def _run_json(run):
    vm_backups = list(run.vm_backups.order_by("pk"))
    return {
        "id": run.pk, "url": run.get_absolute_url(), "status": run.status, "status_display": run.get_status_display(),
        "created_at": run.created_at.isoformat(), "finished": run.is_finished, "message": run.message,
        "vm_backups": [{
            "id": vb.pk, "vm_name": vb.vm_name, "status": vb.status, "status_display": vb.get_status_display(),
            "phase_display": vb.phase_text,
            "progress": 1.0 if vb.status in (RunStatus.SUCCESS, RunStatus.WARNING) else vb.progress,
            "kind_reason": vb.kind_reason, "error": vb.error,
        } for vb in vm_backups],
    }


class JobLatestRunView(CapabilityRequiredMixin, View):
    """The job's newest run with its VMs' progress: the job page follows a run it started."""

    def get(self, request, pk):
        job = get_object_or_404(BackupJob, pk=pk)
        after = request.GET.get("after")
        runs = job.runs.order_by("-created_at", "-pk")
        if after and after.isdigit():
            runs = runs.filter(pk__gt=int(after))
        run = runs.first()
        return JsonResponse({"run": _run_json(run) if run else None})


class SelectionPreviewView(CapabilityRequiredMixin, View):
    """GET with the job form's "What" fields: the VMs that selection picks now."""

    def get(self, request):
        form = SelectionPreviewForm(request.GET)
        if not form.is_valid():
            return JsonResponse({"errors": {name: [str(e) for e in errors] for name, errors in form.errors.items()}},
                                status=400)
        vms = list(form.selected_vms()[:PREVIEW_LIMIT + 1])
        return JsonResponse({
            "count": form.selected_vms().count(), "truncated": len(vms) > PREVIEW_LIMIT,
            "vms": [{"id": vm.pk, "name": vm.name, "pool": vm.pool.name, "power_state": vm.power_state,
                     "url": vm.get_absolute_url()} for vm in vms[:PREVIEW_LIMIT]],
        })


class SchedulePreviewView(CapabilityRequiredMixin, View):
    """GET with the schedule form's fields: the cron, its words and the next five times."""

    def get(self, request):
        form = ScheduleForm(request.GET)
        if not form.is_valid():
            return JsonResponse({"errors": {name: [str(e) for e in errors] for name, errors in form.errors.items()}},
                                status=400)
        cron, tz = form.cleaned_data["cron"], form.cleaned_data["timezone"]
        return JsonResponse({"cron": cron, "timezone": tz, "description": schedules.describe(cron),
                             "next": [local_time(t) for t in schedules.next_times(cron, tz, 5)]})


class ScheduleFormView(CapabilityRequiredMixin, View):
    """Add (no schedule pk) or edit a schedule of a job."""

    capability = MANAGE
    template_name = "backups/jobs/schedule_form.html"

    def _objects(self, pk, schedule_pk):
        job = get_object_or_404(BackupJob, pk=pk)
        schedule = get_object_or_404(JobSchedule, pk=schedule_pk, job=job) if schedule_pk else None
        return job, schedule

    def get(self, request, pk, schedule_pk=None):
        job, schedule = self._objects(pk, schedule_pk)
        return render(request, self.template_name, {"job": job, "schedule": schedule,
                                                    "form": ScheduleForm(instance=schedule)})

    def post(self, request, pk, schedule_pk=None):
        job, schedule = self._objects(pk, schedule_pk)
        form = ScheduleForm(request.POST, instance=schedule or JobSchedule(job=job))
        if form.is_valid():
            with transaction.atomic():
                before = model_snapshot(JobSchedule.objects.get(pk=schedule.pk)) if schedule else None
                form.instance.job = job
                schedule = form.save()
                editing.schedule_saved(schedule, before=before, user=request.user)
            messages.success(request, f"Schedule saved: {schedules.describe(schedule.cron)} ({schedule.timezone}).")
            return redirect(job)
        return render(request, self.template_name, {"job": job, "schedule": schedule, "form": form}, status=400)


class ScheduleDeleteView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def post(self, request, pk, schedule_pk):
        schedule = get_object_or_404(JobSchedule.objects.select_related("job", "q_schedule"), pk=schedule_pk, job_id=pk)
        editing.delete_schedule(schedule, user=request.user)
        messages.success(request, "Schedule removed.")
        return redirect(schedule.job)


def retention_rows(job, plan):
    """Per VM: its points newest first, each kept (with reasons) or removed; and the timeline data."""
    points = RestorePoint.objects.filter(job=job, store=job.store).order_by("vm_name", "vm_uuid", "-taken_at")
    removed = set(plan.remove)
    by_vm = {}
    for point in points:
        vm = by_vm.setdefault(point.vm_uuid, {"vm_uuid": point.vm_uuid, "vm_name": point.vm_name, "points": [],
                                              "deleted": plan.deleted_vms.get(point.vm_uuid)})
        vm["points"].append({"point": point, "kept": point.point_id not in removed,
                             "reasons": plan.reasons(point.point_id)})
    rows = list(by_vm.values())
    for row in rows:
        row["kept"] = sum(p["kept"] for p in row["points"])
        row["removed"] = len(row["points"]) - row["kept"]
    timeline = [{"vm": row["vm_name"], "points": [
        {"t": p["point"].taken_at.isoformat(), "kept": p["kept"], "reasons": p["reasons"]} for p in row["points"]]}
        for row in rows]
    return rows, timeline


class RetentionPreviewView(CapabilityRequiredMixin, View):
    """What the job's policy (or the one in the GET parameters) keeps and removes now."""

    template_name = "backups/jobs/retention_preview.html"

    def get(self, request, pk):
        job = get_object_or_404(BackupJob.objects.select_related("store"), pk=pk)
        proposed = any(name in request.GET for name in RetentionForm.Meta.fields)
        form = RetentionForm(request.GET if proposed else None, instance=job)
        policy = form.retention() if proposed and form.is_valid() else None
        plan = retention_preview(job, policy)
        rows, timeline = retention_rows(job, plan)
        return render(request, self.template_name, {
            "job": job, "form": form, "proposed": proposed and policy is not None, "rows": rows, "timeline": timeline,
            "kept": sum(p["kept"] for row in rows for p in row["points"]), "removed": len(plan.remove),
            "can_manage": user_can(request.user, MANAGE),
        }, status=400 if proposed and policy is None else 200)


class RetentionSaveView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def post(self, request, pk):
        job = get_object_or_404(BackupJob, pk=pk)
        form = RetentionForm(request.POST, instance=job)
        if not form.is_valid():
            problems = " ".join(error for errors in form.errors.values() for error in errors)
            messages.error(request, f"Retention not saved: {problems}")
            return redirect("backups:job_retention", pk=job.pk)
        save_job(form, user=request.user)
        messages.success(request, f"Retention of {job.name} saved; it applies after the job's next run.")
        return redirect(job)


# -- runs and restore points -----------------------------------------------------------------
class VmBackupCancelView(CapabilityRequiredMixin, View):
    capability = OPERATE

    def post(self, request, pk):
        vm_backup = get_object_or_404(VmBackup.objects.select_related("run"), pk=pk)
        if vm_backup.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            messages.info(request, f"The backup of {vm_backup.vm_name} has already finished.")
        else:
            cancel_vm(vm_backup, user=request.user)
            running = vm_backup.status == RunStatus.RUNNING
            messages.success(request, f"Backup of {vm_backup.vm_name} cancelled"
                                      + (" (it stops at its next step)." if running else "."))
        return redirect(vm_backup.run)


class RunRetryView(CapabilityRequiredMixin, View):
    capability = OPERATE

    def post(self, request, pk):
        run = get_object_or_404(BackupRun.objects.select_related("job"), pk=pk)
        try:
            retry = retry_failed(run, user=request.user)
        except JobRunError as exc:
            messages.error(request, f"Not retried: {exc}.")
            return redirect(run)
        messages.success(request, f"{retry.vm_backups.count()} VM(s) of run #{run.pk} are being backed up again.")
        return redirect(retry)


class PointProtectView(CapabilityRequiredMixin, View):
    """Protect (never pruned, never deleted) or unprotect a restore point."""

    capability = OPERATE
    template_name = "backups/jobs/point_protect.html"

    def get(self, request, pk, action):
        """The protect form with its note (unprotecting needs no form of its own: POST only)."""
        if action == "unprotect":
            return HttpResponseNotAllowed(["POST"])
        if action != "protect":
            raise Http404("unknown action")
        point = get_object_or_404(RestorePoint.objects.select_related("store"), pk=pk)
        return render(request, self.template_name, {"point": point, "form": ProtectForm(),
                                                    "next": self._next(request, request.GET)})

    def _next(self, request, data):
        target = data.get("next", "")
        safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure())
        return target if target and safe else reverse("backups:point_list")

    def post(self, request, pk, action):
        if action not in ("protect", "unprotect"):
            raise Http404("unknown action")
        point = get_object_or_404(RestorePoint, pk=pk)
        form = ProtectForm(request.POST)
        form.is_valid()
        editing.set_protected(point, action == "protect", note=form.cleaned_data.get("note", ""), user=request.user)
        messages.success(request, f"Restore point of {point.vm_name} taken {point.taken_at:%Y-%m-%d %H:%M} "
                                  + ("protected: prune and delete leave it alone." if action == "protect"
                                     else "no longer protected: retention applies to it again."))
        return redirect(self._next(request, request.POST))

