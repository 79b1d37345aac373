"""The restore wizard (five steps) and the live page of a restore run.

1. VM (search restore points, also of VMs deleted from their pool)  2. restore point
3. target pool, host, SR per disk, network per VIF  4. identity and start  5. review.

The choices so far are kept in the session as plain ids (WizardState) and turned into a
RestorePlan on every request; every step checks the plan with validate_plan and shows each
problem next to the field it names, and "Start restore" checks it once more (request_restore
validates again) before queuing the run. The views stay thin: defaults, checks and the
restore itself live in backups.restore.plan.
"""
import calendar
from collections import OrderedDict
from dataclasses import dataclass

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View

from sesamweb.accounts.permissions import OPERATE, VIEW, CapabilityRequiredMixin
from sesamweb.accounts.roles import user_can
from sesamweb.identifiers import parse_id
from xenpools.models import VM, Host, Network, Pool, StorageRepository

from ..choices import RunStatus, VerifyState
from ..formats.xva import XvaError
from ..models import RestorePoint, RestoreRun
from ..repository import RepositoryError
from ..templatetags.backups_tags import duration, megabytes_per_second
from .forms import (
    LEFT_OUT,
    MEMORY_START_MODES,
    OptionsForm,
    PointChoiceForm,
    TargetForm,
    VmChoiceForm,
    disk_field_name,
    vif_field_name,
)
from .plan import (
    RestorePlan,
    RestorePlanError,
    cancel_restore,
    default_plan,
    describe_point,
    request_restore,
    validate_plan,
)

SESSION_KEY = "restore_wizard"
# Reading a restore point's manifest can fail: store offline, wrong key, pruned meanwhile.
POINT_READ_ERRORS = (RepositoryError, XvaError, OSError)


@dataclass(frozen=True)
class Step:
    number: int
    url_name: str
    title: str
    problem_steps: frozenset   # PlanProblem.step values this wizard step lets the user fix


STEPS = (
    Step(1, "backups:restore", "Virtual machine", frozenset()),
    Step(2, "backups:restore_point", "Restore point", frozenset({"point"})),
    Step(3, "backups:restore_target", "Target", frozenset({"target", "storage", "network"})),
    Step(4, "backups:restore_options", "Identity and start", frozenset({"identity", "start"})),
    Step(5, "backups:restore_review", "Review", frozenset()),
)


def step_for_problem(problem) -> Step:
    for step in STEPS:
        if problem.step in step.problem_steps:
            return step
    return STEPS[3] if problem.field in OptionsForm.base_fields else STEPS[2]


# --- wizard state ---------------------------------------------------------------------------
class WizardState:
    """The wizard's choices in the session: the VM, then a RestorePlan stored as ids."""

    def __init__(self, request):
        self.request = request
        self.data = dict(request.session.get(SESSION_KEY) or {})
        self._details = {}

    def details(self, point):
        """describe_point() reads the manifest: once per point and request."""
        if point.pk not in self._details:
            self._details[point.pk] = describe_point(point)
        return self._details[point.pk]

    def save(self):
        self.request.session[SESSION_KEY] = self.data

    def clear(self):
        self.request.session.pop(SESSION_KEY, None)
        self.data = {}

    @property
    def vm_uuid(self):
        return self.data.get("vm_uuid")

    def choose_vm(self, uuid):
        if uuid != self.vm_uuid:
            self.data = {"vm_uuid": uuid, "done": [1]}
        self.save()

    def mark_done(self, number):
        self.data["done"] = sorted(set(self.data.get("done", [])) | {number})
        self.save()

    def is_done(self, number):
        return number in self.data.get("done", [])

    def point(self):
        pk = self.data.get("point")
        return RestorePoint.objects.select_related("store").filter(pk=pk).first() if pk else None

    def choose_point(self, point):
        """A new point starts a new plan from its defaults; the same point keeps the plan."""
        if point.pk != self.data.get("point"):
            self.data = {"vm_uuid": point.vm_uuid, "done": [1, 2]}
            self.store_plan(default_plan(point, default_target_pool(point), self.details(point)))
        else:
            self.mark_done(2)
        self.save()

    def store_plan(self, plan: RestorePlan):
        self.data.update({
            "point": plan.point.pk,
            "target_pool": plan.target_pool.pk,
            "target_host": plan.target_host.pk if plan.target_host else None,
            "sr_by_disk": {key: sr.pk for key, sr in plan.sr_by_disk.items() if sr is not None},
            "network_by_vif": {device: (net.pk if net else None) for device, net in plan.network_by_vif.items()},
            "identity": plan.identity,
            "replace_original": plan.replace_original,
            "name": plan.name,
            "start_mode": plan.start_mode,
            "disconnect_vifs": plan.disconnect_vifs,
        })
        self.save()

    def plan(self) -> RestorePlan | None:
        """The plan chosen so far (None before a point is chosen). A pool, SR or network
        that disappeared from the inventory meanwhile falls back to the defaults."""
        point = self.point()
        if point is None:
            return None
        pool = Pool.objects.filter(pk=self.data.get("target_pool")).first()
        if pool is None:
            plan = default_plan(point, default_target_pool(point), self.details(point))
            self.store_plan(plan)
            return plan
        defaults = default_plan(point, pool, self.details(point))
        srs = StorageRepository.objects.in_bulk(list(self.data.get("sr_by_disk", {}).values()))
        networks = Network.objects.in_bulk([pk for pk in self.data.get("network_by_vif", {}).values() if pk])
        sr_by_disk = dict(defaults.sr_by_disk)
        for key, pk in self.data.get("sr_by_disk", {}).items():
            if pk in srs:
                sr_by_disk[key] = srs[pk]
        network_by_vif = dict(defaults.network_by_vif)
        for device, pk in self.data.get("network_by_vif", {}).items():
            if pk is None:
                network_by_vif[device] = None
            elif pk in networks:
                network_by_vif[device] = networks[pk]
        return RestorePlan(
            point=point,
            target_pool=pool,
            target_host=Host.objects.filter(pk=self.data.get("target_host"), pool=pool).first(),
            sr_by_disk=sr_by_disk,
            network_by_vif=network_by_vif,
            identity=self.data.get("identity", defaults.identity),
            replace_original=self.data.get("replace_original", defaults.replace_original),
            name=self.data.get("name", defaults.name),
            start_mode=self.data.get("start_mode", defaults.start_mode),
            disconnect_vifs=self.data.get("disconnect_vifs", defaults.disconnect_vifs),
        )


def default_target_pool(point) -> Pool | None:
    """The pool the VM was backed up from when it is still registered, else the first pool."""
    return (Pool.objects.filter(uuid=point.pool_uuid).first() if point.pool_uuid else None) or Pool.objects.first()


def original_vm(point):
    """The backed-up VM as it exists now in any registered pool, or None if deleted."""
    return (VM.objects.filter(uuid=point.vm_uuid, is_snapshot=False, removed_at__isnull=True)
            .select_related("pool", "host").first())


def attach_problems(form, problems, step: Step):
    """Show each problem of this step next to its field (or above the form)."""
    shown = []
    for problem in problems:
        message = problem.message[:1].upper() + problem.message[1:]
        if problem.field in form.fields:
            form.add_error(problem.field, message)
        elif problem.step in step.problem_steps:
            form.add_error(None, message)
        else:
            continue
        shown.append(problem)
    return shown


# --- the steps ------------------------------------------------------------------------------
class WizardStepView(CapabilityRequiredMixin, View):
    capability = OPERATE
    step: Step
    template_name: str

    def dispatch(self, request, *args, **kwargs):
        self.state = WizardState(request)
        try:
            return super().dispatch(request, *args, **kwargs)
        except POINT_READ_ERRORS as error:
            # Only a chosen point is ever read; send the user back to choose another.
            messages.error(request, f"The restore point cannot be read: {error}. Choose another restore point.")
            self.state.data.pop("point", None)
            self.state.data["done"] = [1] if self.state.vm_uuid else []
            self.state.save()
            return redirect("backups:restore_point" if self.state.vm_uuid else "backups:restore")

    def missing_step(self):
        """The first earlier step not completed yet, or None."""
        for step in STEPS[: self.step.number - 1]:
            if not self.state.is_done(step.number):
                return step
        return None

    def guard(self):
        missing = self.missing_step()
        if missing is None and self.step.number > 2 and self.state.point() is None:
            missing = STEPS[1]
        if missing is not None:
            return redirect(missing.url_name)
        return None

    def get(self, request):
        return self.guard() or self.show(self.initial_form())

    def post(self, request):
        return self.guard() or self.submit()

    def render_step(self, **context):
        steps = [{"step": step, "url": reverse(step.url_name),
                  "done": self.state.is_done(step.number), "current": step == self.step} for step in STEPS]
        point = self.state.point() if self.step.number > 1 else None
        return render(self.request, self.template_name, {
            "steps": steps, "step": self.step, "point": point,
            "vm_name": point.vm_name if point else None, **context,
        })

    def next_step(self):
        self.state.mark_done(self.step.number)
        return redirect(STEPS[self.step.number].url_name)


class RestoreVmView(WizardStepView):
    """Step 1: find the VM among the restore points (deleted VMs included)."""

    step = STEPS[0]
    template_name = "backups/restore/step_vm.html"
    page_size = 25

    def get(self, request):
        if "point" in request.GET:
            point_id = parse_id(request.GET["point"])
            point = RestorePoint.objects.filter(pk=point_id).first() if point_id is not None else None
            if point is None:
                messages.error(request, "That restore point no longer exists: choose the VM and the point again.")
                return redirect("backups:restore")
            self.state.choose_vm(point.vm_uuid)
            self.state.choose_point(point)
            return redirect("backups:restore_target")
        if "vm" in request.GET:
            form = VmChoiceForm({"vm": request.GET["vm"]})
            if form.is_valid():
                self.state.choose_vm(form.cleaned_data["vm"])
                return redirect("backups:restore_point")
            return self.show(form)
        return self.show(VmChoiceForm(initial={"vm": self.state.vm_uuid}))

    def submit(self):
        form = VmChoiceForm(self.request.POST)
        if form.is_valid():
            self.state.choose_vm(form.cleaned_data["vm"])
            return self.next_step()
        return self.show(form)

    def show(self, form):
        query = (self.request.GET.get("q") or self.request.POST.get("q") or "").strip()
        page = Paginator(vm_groups(query), self.page_size).get_page(self.request.GET.get("page"))
        annotate_vm_groups(page.object_list)
        recent = list(RestoreRun.objects.select_related("target_pool").order_by("-created_at")[:5])
        for run in recent:
            run.badge = STATUS_BADGES.get(run.status, "muted")
        return self.render_step(form=form, query=query, page_obj=page, groups=page.object_list,
                                query_string=f"q={query}" if query else "", recent_runs=recent)


def vm_groups(query: str):
    """Restore points grouped by VM: latest name, pool uuid and point, number of points."""
    points = RestorePoint.objects.all()
    if query:
        points = points.filter(Q(vm_name__icontains=query) | Q(vm_uuid__icontains=query))
    latest = RestorePoint.objects.filter(vm_uuid=OuterRef("vm_uuid")).order_by("-taken_at")
    return (points.values("vm_uuid")
            .annotate(points=Count("pk"), latest_at=Max("taken_at"),
                      vm_name=Subquery(latest.values("vm_name")[:1]),
                      pool_uuid=Subquery(latest.values("pool_uuid")[:1]))
            .order_by("vm_name", "vm_uuid"))


def annotate_vm_groups(groups):
    """Add where each VM is now (its pool) or that it was deleted, in two queries."""
    uuids = [group["vm_uuid"] for group in groups]
    live = {vm.uuid: vm for vm in VM.objects.filter(uuid__in=uuids, is_snapshot=False, removed_at__isnull=True)
            .select_related("pool")}
    pools = {pool.uuid: pool for pool in Pool.objects.filter(uuid__in=[g["pool_uuid"] for g in groups if g["pool_uuid"]])}
    for group in groups:
        vm = live.get(group["vm_uuid"])
        group["vm"] = vm
        group["deleted"] = vm is None
        group["pool"] = vm.pool if vm else pools.get(group["pool_uuid"])


class RestorePointView(WizardStepView):
    """Step 2: a restore point of the VM, on a calendar and a list per day."""

    step = STEPS[1]
    template_name = "backups/restore/step_point.html"

    def initial_form(self):
        return PointChoiceForm(vm_uuid=self.state.vm_uuid, initial={"point": self.state.data.get("point")})

    def submit(self):
        form = PointChoiceForm(self.request.POST, vm_uuid=self.state.vm_uuid)
        if form.is_valid():
            point = form.cleaned_data["point"]
            pool = default_target_pool(point)
            if pool is None:
                form.add_error(None, "No pool is registered: add the pool to restore to first.")
                return self.show(form)
            try:
                details = self.state.details(point)
            except POINT_READ_ERRORS as error:
                form.add_error("point", f"This restore point cannot be read: {error}. Choose another one.")
                return self.show(form)
            problems = validate_plan(default_plan(point, pool, details), details)
            if not attach_problems(form, problems, self.step):
                self.state.choose_point(point)
                return self.next_step()
        return self.show(form)

    def show(self, form):
        points = list(RestorePoint.objects.filter(vm_uuid=self.state.vm_uuid).select_related("store").order_by("-taken_at"))
        days = OrderedDict()
        for point in points:
            days.setdefault(timezone.localtime(point.taken_at).date(), []).append(point)
        chosen = form["point"].value()
        return self.render_step(
            form=form, days=days, months=calendar_months(days), chosen=str(chosen) if chosen else "",
            vm_name=points[0].vm_name if points else self.state.vm_uuid, vm_uuid=self.state.vm_uuid,
            original=original_vm(points[0]) if points else None, damaged=VerifyState.DAMAGED,
        )


def calendar_months(days):
    """Month grids (weeks of 7 cells, Monday first) for the months that have restore points."""
    months = OrderedDict()
    for day in days:
        months.setdefault((day.year, day.month), None)
    grid = calendar.Calendar(firstweekday=0)
    result = []
    for year, month in months:
        weeks = []
        for week in grid.monthdatescalendar(year, month):
            weeks.append([{"date": d, "in_month": d.month == month, "count": len(days.get(d, []))} for d in week])
        result.append({"year": year, "month": month, "label": f"{calendar.month_name[month]} {year}", "weeks": weeks})
    return result


class RestoreTargetView(WizardStepView):
    """Step 3: pool, host, SR per disk (free space shown and checked), network per VIF."""

    step = STEPS[2]
    template_name = "backups/restore/step_target.html"

    def initial_form(self, plan=None):
        plan = plan or self.state.plan()
        details = self.state.details(plan.point)
        initial = {"target_pool": plan.target_pool.pk, "target_host": plan.target_host.pk if plan.target_host else None}
        for disk in details.disks:
            sr = plan.sr_by_disk.get(disk.key)
            initial[disk_field_name(disk.key)] = sr.pk if sr else None
        for vif in details.vifs:
            if vif.device in plan.network_by_vif:    # absent: no match, the administrator chooses
                network = plan.network_by_vif[vif.device]
                initial[vif_field_name(vif.device)] = str(network.pk) if network else LEFT_OUT
        return TargetForm(initial=initial, pool=plan.target_pool, details=details,
                          with_memory=plan.start_mode in MEMORY_START_MODES)

    def submit(self):
        plan = self.state.plan()
        details = self.state.details(plan.point)
        form = TargetForm(self.request.POST, pool=plan.target_pool, details=details,
                          with_memory=plan.start_mode in MEMORY_START_MODES)
        if "change_pool" in self.request.POST and not form.pool_changed():
            return self.show(self.initial_form(plan), plan)     # same pool: nothing to reload
        if form.pool_changed():
            pool = Pool.objects.filter(pk=self.request.POST.get("target_pool")).first()
            if pool is None:
                form.add_error("target_pool", "That pool is not registered (any more).")
                return self.show(form, plan)
            new_plan = default_plan(plan.point, pool, details)
            for option in ("identity", "replace_original", "name", "start_mode", "disconnect_vifs"):
                setattr(new_plan, option, getattr(plan, option))
            self.state.store_plan(new_plan)
            messages.info(self.request, f"Storage and networks now come from pool {pool.name}: check them, then continue.")
            return self.show(self.initial_form(new_plan), new_plan)
        if form.is_valid():
            plan.target_host = form.cleaned_data["target_host"]
            plan.sr_by_disk = form.selected_srs()
            plan.network_by_vif = form.selected_networks()
            self.state.store_plan(plan)
            if not attach_problems(form, validate_plan(plan, details), self.step):
                return self.next_step()
        return self.show(form, plan)

    def show(self, form, plan=None):
        plan = plan or self.state.plan()
        return self.render_step(form=form, plan=plan, storage=storage_needs(form, plan),
                                disk_rows=[(disk, form[name]) for disk, name in form.disk_fields],
                                vif_rows=[(vif, form[name]) for vif, name in form.vif_fields])


def storage_needs(form, plan):
    """Each SR of the target pool with its free space and what this restore would put on it."""
    needed = {}
    for disk, _name in form.disk_fields:
        if disk.is_memory and plan.start_mode not in MEMORY_START_MODES:
            continue
        sr = plan.sr_by_disk.get(disk.key)
        if sr is not None:
            needed[sr.pk] = needed.get(sr.pk, 0) + disk.virtual_size
    rows = []
    for sr in StorageRepository.objects.filter(pool=plan.target_pool).exclude(content_type="iso"):
        rows.append({"sr": sr, "needed": needed.get(sr.pk, 0), "short": needed.get(sr.pk, 0) > sr.free_space})
    return rows


class RestoreOptionsView(WizardStepView):
    """Step 4: identity (with the conflicts explained), replace, name, start mode."""

    step = STEPS[3]
    template_name = "backups/restore/step_options.html"

    def initial_form(self):
        plan = self.state.plan()
        return OptionsForm(initial={"identity": plan.identity, "replace_original": plan.replace_original,
                                    "name": plan.name, "start_mode": plan.start_mode,
                                    "disconnect_vifs": plan.disconnect_vifs})

    def submit(self):
        plan = self.state.plan()
        form = OptionsForm(self.request.POST)
        if form.is_valid():
            for option, value in form.cleaned_data.items():
                setattr(plan, option, value)
            self.state.store_plan(plan)
            if not attach_problems(form, validate_plan(plan, self.state.details(plan.point)), self.step):
                return self.next_step()
        return self.show(form)

    def show(self, form):
        plan = self.state.plan()
        return self.render_step(form=form, plan=plan, original=original_vm(plan.point),
                                has_memory=plan.point.has_memory)


class RestoreReviewView(WizardStepView):
    """Step 5: everything at a glance; "Start restore" validates again and queues the run."""

    step = STEPS[4]
    template_name = "backups/restore/step_review.html"

    def get(self, request):
        if redirect_to := self.guard():
            return redirect_to
        plan = self.state.plan()
        return self.show(validate_plan(plan, self.state.details(plan.point)))

    def submit(self):
        plan = self.state.plan()
        try:
            run = request_restore(plan, self.request.user)
        except RestorePlanError as error:
            return self.show(error.problems, refused=True)
        self.state.clear()
        messages.success(self.request, f"Restore of {plan.point.vm_name} queued: it starts as soon as a worker is free.",
                         extra_tags="run-queued")
        return redirect(run.get_absolute_url())

    def show(self, problems, refused=False):
        plan = self.state.plan()
        details = self.state.details(plan.point)
        problems = [{"problem": p, "step": step_for_problem(p)} for p in problems]
        return self.render_step(
            plan=plan, details=details, problems=problems, refused=refused, original=original_vm(plan.point),
            disks=[(disk, plan.sr_by_disk.get(disk.key)) for disk in details.restored_disks(plan.start_mode)],
            vifs=[(vif, plan.network_by_vif.get(vif.device)) for vif in details.vifs],
            identity_label=dict(OptionsForm.base_fields["identity"].choices).get(plan.identity, plan.identity),
            start_label=dict(OptionsForm.base_fields["start_mode"].choices).get(plan.start_mode, plan.start_mode),
        )


# --- the run --------------------------------------------------------------------------------
class RestoreRunView(CapabilityRequiredMixin, View):
    """The live progress of one restore (read-only: anyone who may view the console);
    ?format=json gives the same figures to the page's script."""

    capability = VIEW

    def get(self, request, pk):
        run = get_object_or_404(RestoreRun.objects.select_related("point", "target_pool", "target_host", "requested_by"), pk=pk)
        status = run_status(run)
        if request.GET.get("format") == "json":
            return JsonResponse(status)
        return render(request, "backups/restore/run_detail.html", {
            "run": run, "status": status, "can_cancel": user_can(request.user, OPERATE) and not run.is_finished,
            "run_started": run.status != RunStatus.QUEUED,
        })


class RestoreRunCancelView(CapabilityRequiredMixin, View):
    capability = OPERATE

    def post(self, request, pk):
        run = get_object_or_404(RestoreRun, pk=pk)
        if run.is_finished:
            messages.info(request, f"{run} has already finished.")
        else:
            cancel_restore(run, request.user)
            messages.warning(request, f"{run}: cancel requested; anything it created on the pool is removed.")
        return redirect(run.get_absolute_url())


STATUS_BADGES = {RunStatus.QUEUED: "muted", RunStatus.RUNNING: "info", RunStatus.SUCCESS: "ok",
                 RunStatus.WARNING: "warn", RunStatus.FAILED: "danger", RunStatus.CANCELLED: "muted"}


def rate_text(run) -> str:
    """The current speed while running; the average over the whole run once finished."""
    if run.is_finished and run.duration_seconds:
        return megabytes_per_second(run.bytes_done, run.duration_seconds) + " on average"
    return megabytes_per_second(run.rate or 0.0, 1)


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "not yet"


def run_status(run) -> dict:
    """What the progress page shows, as JSON-able values."""
    restored = None
    if run.restored_vm_uuid:
        restored = VM.objects.filter(pool=run.target_pool_id, uuid=run.restored_vm_uuid, is_snapshot=False).first()
    total, done = run.bytes_total or 0, run.bytes_done or 0
    succeeded = run.status in (RunStatus.SUCCESS, RunStatus.WARNING)
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "badge": STATUS_BADGES.get(run.status, "muted"),
        "finished": run.is_finished,
        "phase": run.phase,
        "phase_label": run.phase_text,
        "bytes_total": total,
        "bytes_done": done,
        "percent": 100 if succeeded else (min(100, round(100 * done / total)) if total else 0),
        "rate": run.rate or 0.0,
        "rate_text": rate_text(run),
        "duration_seconds": run.duration_seconds,
        "duration_text": duration(run.duration_seconds),
        "started_text": _when(run.started_at),
        "finished_text": _when(run.finished_at),
        "error": run.error,
        "warnings": list(run.warnings or []),
        "restored_vm_uuid": run.restored_vm_uuid,
        "restored_vm_url": restored.get_absolute_url() if restored else "",
        "restored_vm_name": restored.name if restored else (run.plan or {}).get("name", ""),
    }
