"""Backup pages: runs (live), data stores, restore points and "Back up now". Thin views:
the work is done by backups.services, backups.stores and the tasks they queue."""
from django.contrib import messages
from django.db.models import Count, Max, Q, Sum
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.core.paginator import Paginator
from django.views import View
from django.views.generic import DetailView, ListView
from django_q.models import Task

from sesamweb.accounts.permissions import MANAGE, OPERATE, CapabilityRequiredMixin
from sesamweb.accounts.roles import user_can
from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.log import record_event
from sesamweb.identifiers import parse_id
from xenpools.models import VM, Pool, StorageRepository

from .choices import BackupMethod, BackupPhase, RunStatus, Trigger, VerifyState
from .filters import BackupRunFilterSet, RestorePointFilterSet
from .forms import BackupNowForm, DataStoreEditForm, DataStoreForm, HistoryFilterForm, KeyExportForm, MaintenanceScheduleForm, PruneForm
from .history import HistoryFilter, history, load_page
from .devices.routing import DeviceServerRevoked, waiting_on_device_servers
from .maintenance import prune_preview, remove_maintenance_schedule, save_maintenance_schedule
from .models import BackupRun, DataStore, RestorePoint, StoreMaintenanceSchedule, VmBackup
from .formats.xva import XvaError
from .pool_cleanup import CleanupAlreadyRunning, request_cleanup
from .repository import KeyAlreadyExportedError, RepositoryError
from .restore.plan import RestorePlanError, describe_point, request_disk_restore
from .services import BackupRequestError, add_run_totals, cancel_run, queue_run, request_backup
from .stores import StoreInUse, create_store, delete_store, export_key_file, forget_store, set_offline, update_store
from .tasks import STORE_TASKS, queue_store_task, store_task_group
from .templatetags.backups_tags import megabytes_per_second, restore_url


def _querystring(request):
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


class RunListView(CapabilityRequiredMixin, ListView):
    template_name = "backups/run_list.html"
    context_object_name = "runs"
    paginate_by = 50

    def get_queryset(self):
        self.filterset = BackupRunFilterSet(self.request.GET, queryset=BackupRun.objects.all())
        # No GROUP BY here: aggregating 100,000 runs to show 50 took seconds. The page's runs
        # are summed afterwards (add_run_totals).
        return (self.filterset.qs.select_related("requested_by", "job").prefetch_related("vm_backups__store")
                .order_by("-created_at", "-pk"))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(filterset=self.filterset, querystring=_querystring(self.request), **kwargs)
        add_run_totals(context["runs"])
        context["active_runs"] = [run.pk for run in context["runs"] if run.status not in RunStatus.finished()]
        return context


class RunDetailView(CapabilityRequiredMixin, DetailView):
    template_name = "backups/run_detail.html"
    context_object_name = "run"

    def get_queryset(self):
        return BackupRun.objects.select_related("requested_by", "job", "schedule")

    def get_context_data(self, **kwargs):
        run = self.object
        vm_backups = list(run.vm_backups.select_related("store", "vm", "restore_point").order_by("pk"))
        for vb in vm_backups:
            vb.speed_text = "…" if vb.status == RunStatus.RUNNING else megabytes_per_second(
                vb.bytes_processed, vb.duration_seconds)
            vb.show_downtime = vb.method == BackupMethod.OFFLINE or vb.downtime_seconds is not None
        finished = run.status in RunStatus.finished()
        can_operate = user_can(self.request.user, OPERATE)
        retry_statuses = (RunStatus.FAILED, RunStatus.SKIPPED, RunStatus.CANCELLED)
        return super().get_context_data(
            vm_backups=vm_backups, labels={"phase": dict(BackupPhase.choices), "status": dict(RunStatus.choices)},
            finished=finished, can_operate=can_operate, run_started=run.status != RunStatus.QUEUED,
            can_cancel=can_operate and not finished,
            can_retry=can_operate and finished and run.job_id is not None
            and any(vb.status in retry_statuses and vb.vm_id for vb in vm_backups),
            device_waiting=[] if finished else waiting_on_device_servers(run),
            **kwargs)


class VmBackupDetailView(CapabilityRequiredMixin, View):
    """A VM backup is shown on its run's page, anchored."""

    def get(self, request, pk):
        vm_backup = get_object_or_404(VmBackup, pk=pk)
        return redirect(reverse("backups:run_detail", args=[vm_backup.run_id]) + f"#vm-backup-{vm_backup.pk}")


class RunCancelView(CapabilityRequiredMixin, View):
    capability = OPERATE

    def post(self, request, pk):
        run = get_object_or_404(BackupRun, pk=pk)
        if run.status in RunStatus.finished():
            messages.info(request, f"{run} has already finished.")
        else:
            cancel_run(run, user=request.user)
            messages.success(request, f"{run}: cancel requested. A running backup stops at its next step and "
                                      "cleans up its snapshots.")
        return redirect(run)


class PoolCleanupView(CapabilityRequiredMixin, View):
    """Clean up now (pool page): a pass over the pool for leftovers of interrupted backups and
    restores, queued on a worker; its outcome shows on the pool page and in the audit log."""

    capability = OPERATE

    def post(self, request, pk):
        pool = get_object_or_404(Pool, pk=pk)
        try:
            request_cleanup(pool, request.user)
        except CleanupAlreadyRunning as exc:
            messages.warning(request, str(exc))
        else:
            messages.info(request, f"Clean-up of {pool.name} started; reload the page for its outcome.")
        return redirect(pool)


class BackupNowView(CapabilityRequiredMixin, View):
    """"Back up now" for one VM: the form on the VM page posts here (GET shows it alone)."""

    capability = OPERATE
    template_name = "backups/backup_now.html"

    def get(self, request, vm_pk):
        vm = get_object_or_404(VM.objects.select_related("pool"), pk=vm_pk)
        return render(request, self.template_name, {"vm": vm, "form": BackupNowForm(vm=vm)})

    def post(self, request, vm_pk):
        vm = get_object_or_404(VM.objects.select_related("pool"), pk=vm_pk)
        form = BackupNowForm(request.POST, vm=vm)
        if form.is_valid():
            try:
                run = request_backup(vm=vm, trigger=Trigger.MANUAL, user=request.user, **form.backup_options())
            except BackupRequestError as exc:
                form.add_error(None, str(exc))
            else:
                queue_run(run)
                messages.success(request, f"Backup of {vm.name} queued.", extra_tags="run-queued")
                return redirect(run)
        return render(request, self.template_name, {"vm": vm, "form": form}, status=400)


class StoreListView(CapabilityRequiredMixin, ListView):
    template_name = "backups/store_list.html"
    context_object_name = "stores"

    def get_queryset(self):
        return DataStore.objects.annotate(
            point_count=Count("restore_points"), vm_count=Count("restore_points__vm_uuid", distinct=True),
            stored=Sum("restore_points__bytes_stored"), covered=Sum("restore_points__virtual_size"),
            last_point=Max("restore_points__taken_at"),
        )

    def get_context_data(self, **kwargs):
        return super().get_context_data(can_manage=user_can(self.request.user, MANAGE), **kwargs)


class StoreAddView(CapabilityRequiredMixin, View):
    capability = MANAGE
    template_name = "backups/store_form.html"

    def get(self, request):
        return render(request, self.template_name, {"form": DataStoreForm()})

    def post(self, request):
        form = DataStoreForm(request.POST)
        if form.is_valid():
            try:
                store = create_store(**form.store_options())
            except (ValueError, RepositoryError, OSError) as exc:
                form.add_error(None, f"The data store could not be created: {exc}")
            else:
                messages.success(request, f"Data store {store.name} created. Download its key file now and keep it "
                                          "with the passphrase, away from the backups.")
                return redirect(store)
        return render(request, self.template_name, {"form": form}, status=400)


class StoreDetailView(CapabilityRequiredMixin, DetailView):
    template_name = "backups/store_detail.html"
    context_object_name = "store"
    model = DataStore

    def get_context_data(self, maintenance_form=None, **kwargs):
        store = self.object
        per_vm = (RestorePoint.objects.filter(store=store).values("vm_uuid")
                  .annotate(vm_name=Max("vm_name"), points=Count("id"), latest=Max("taken_at"),
                            stored=Sum("bytes_stored"), covered=Sum("virtual_size"),
                            damaged=Count("id", filter=Q(verify_state=VerifyState.DAMAGED)),
                            verified=Count("id", filter=Q(verify_state=VerifyState.OK)))
                  .order_by("vm_name"))
        live_uuids = _live_vm_uuids(row["vm_uuid"] for row in per_vm)
        for row in per_vm:
            row["removed"] = row["vm_uuid"] not in live_uuids
        totals = RestorePoint.objects.filter(store=store).aggregate(
            points=Count("id"), stored=Sum("bytes_stored"), covered=Sum("virtual_size"))
        group = store_task_group(store)
        return super().get_context_data(
            per_vm=per_vm, totals=totals,
            can_operate=user_can(self.request.user, OPERATE), can_manage=user_can(self.request.user, MANAGE),
            prune_form=PruneForm(), key_form=KeyExportForm(),
            recent_tasks=Task.objects.filter(group=group).order_by("-stopped")[:6],
            maintenance_schedules=store.maintenance_schedules.select_related("q_schedule"),
            maintenance_form=maintenance_form or MaintenanceScheduleForm(prefix="new"),
            **kwargs)


class MaintenanceScheduleSaveView(CapabilityRequiredMixin, View):
    """Add (pk of the store) or change (and the schedule's pk) a scheduled maintenance task."""

    capability = MANAGE
    template_name = "backups/maintenance_schedule_form.html"

    def get(self, request, pk, schedule_pk=None):
        if schedule_pk is None:     # the add form is on the store page
            return redirect(get_object_or_404(DataStore, pk=pk))
        maintenance = get_object_or_404(StoreMaintenanceSchedule, pk=schedule_pk, store_id=pk)
        return self._page(request, maintenance, MaintenanceScheduleForm(instance=maintenance))

    def post(self, request, pk, schedule_pk=None):
        store = get_object_or_404(DataStore, pk=pk)
        maintenance = (get_object_or_404(StoreMaintenanceSchedule, pk=schedule_pk, store=store)
                       if schedule_pk else None)
        form = MaintenanceScheduleForm(request.POST, instance=maintenance, prefix=None if maintenance else "new")
        if not form.is_valid():
            if maintenance is not None:
                return self._page(request, maintenance, form, status=400)
            view = StoreDetailView(request=request, kwargs={"pk": pk}, object=store)
            return render(request, StoreDetailView.template_name,
                          view.get_context_data(object=store, maintenance_form=form), status=400)
        saved = save_maintenance_schedule(store, form.cleaned_data, user=request.user, instance=maintenance)
        messages.success(request, f"{saved.get_action_display()} of {store.name} {'changed' if maintenance else 'scheduled'}.")
        return redirect(store.get_absolute_url() + "#maintenance-schedules")

    def _page(self, request, maintenance, form, status=200):
        return render(request, self.template_name, {"store": maintenance.store, "maintenance": maintenance, "form": form},
                      status=status)


class MaintenanceScheduleRemoveView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def post(self, request, pk, schedule_pk):
        maintenance = get_object_or_404(StoreMaintenanceSchedule.objects.select_related("store"), pk=schedule_pk, store_id=pk)
        remove_maintenance_schedule(maintenance, user=request.user)
        messages.success(request, f"{maintenance.get_action_display()} of {maintenance.store.name} is no longer scheduled.")
        return redirect(maintenance.store.get_absolute_url() + "#maintenance-schedules")


def _live_vm_uuids(uuids):
    return set(VM.objects.filter(uuid__in=list(uuids), removed_at__isnull=True, is_snapshot=False)
               .values_list("uuid", flat=True))


class StoreMaintenanceView(CapabilityRequiredMixin, View):
    """Queue verify / prune / gc / catalog refresh on the store's workers."""

    capability = OPERATE

    def post(self, request, pk, action):
        store = get_object_or_404(DataStore, pk=pk)
        if action not in STORE_TASKS:
            return HttpResponse(status=404)
        if store.offline:
            messages.error(request, f"{store.name} is offline: bring it back online to run maintenance on it.")
            return redirect(store)
        options = {}
        if action == "prune":
            form = PruneForm(request.POST)
            if not form.is_valid():
                messages.error(request, "Prune not queued: " + " ".join(e for errors in form.errors.values() for e in errors))
                return redirect(store)
            options = form.cleaned_data
        try:
            queue_store_task(store, action, **options)
        except DeviceServerRevoked as exc:
            messages.error(request, f"{STORE_TASKS[action][1]} not queued: {exc}")
            return redirect(store)
        messages.success(request, f"{STORE_TASKS[action][1]} of {store.name} queued on the workers.")
        return redirect(store)


class StoreEditView(CapabilityRequiredMixin, View):
    capability = MANAGE
    template_name = "backups/store_edit.html"

    def get(self, request, pk):
        store = get_object_or_404(DataStore, pk=pk)
        return render(request, self.template_name, {"store": store, "form": DataStoreEditForm(instance=store)})

    def post(self, request, pk):
        store = get_object_or_404(DataStore, pk=pk)
        form = DataStoreEditForm(request.POST, instance=DataStore.objects.get(pk=pk))
        if not form.is_valid():
            return render(request, self.template_name, {"store": store, "form": form}, status=400)
        update_store(store, form.changes(), s3_secret=form.cleaned_data.get("s3_secret", ""), user=request.user)
        messages.success(request, f"Data store {store.name} saved.")
        return redirect(store)


class StoreOfflineView(CapabilityRequiredMixin, View):
    """Take a store offline (backups and maintenance refused) or bring it back."""

    capability = MANAGE

    def post(self, request, pk):
        store = get_object_or_404(DataStore, pk=pk)
        offline = request.POST.get("offline") == "1"
        if store.offline != offline:
            set_offline(store, offline, user=request.user)
        messages.success(request, f"Data store {store.name} is offline: backups and maintenance to it are refused."
                         if offline else f"Data store {store.name} is back online.")
        return redirect(store)


class StoreForgetView(CapabilityRequiredMixin, View):
    """Forget a store (GET: the warning and the confirmation; POST: do it)."""

    capability = MANAGE
    template_name = "backups/store_forget.html"

    def get(self, request, pk):
        store = get_object_or_404(DataStore, pk=pk)
        return render(request, self.template_name, {"store": store, "points": store.restore_points.count(),
                                                    "jobs": store.jobs.all()})

    def post(self, request, pk):
        store = get_object_or_404(DataStore, pk=pk)
        if request.POST.get("confirm_name", "").strip() != store.name:
            messages.error(request, f"Not forgotten: type the store's name, {store.name}, to confirm.")
            return redirect("backups:store_forget", pk=store.pk)
        try:
            forget_store(store, user=request.user)
        except StoreInUse as exc:
            messages.error(request, f"Not forgotten: {exc}.")
            return redirect(store)
        messages.success(request, f"Data store {store.name} forgotten. Its backups and key were left at "
                                  f"{store.location}; add it again to use them.")
        return redirect("backups:store_list")


class StoreDeleteView(CapabilityRequiredMixin, View):
    """Delete an empty store (its repository files go too)."""

    capability = MANAGE

    def post(self, request, pk):
        store = get_object_or_404(DataStore, pk=pk)
        try:
            delete_store(store, user=request.user)
        except StoreInUse as exc:
            messages.error(request, f"Not deleted: {exc}.")
            return redirect(store)
        messages.success(request, f"Empty data store {store.name} deleted.")
        return redirect("backups:store_list")


class StorePrunePreviewView(CapabilityRequiredMixin, View):
    """The prune form's "Preview": what these rules would keep and remove now (a dry run,
    nothing changes), with the button that queues the prune itself. POST, as the form is."""

    capability = OPERATE
    template_name = "backups/prune_preview.html"

    def post(self, request, pk):
        store = get_object_or_404(DataStore, pk=pk)
        form = PruneForm(request.POST)
        if not form.is_valid():
            messages.error(request, "No preview: " + " ".join(e for errors in form.errors.values() for e in errors))
            return redirect(store)
        try:
            rows, kept, removed = prune_preview(store, form.policy(), confirm_last=form.cleaned_data["confirm_last"])
        except (RepositoryError, OSError) as exc:
            messages.error(request, f"No preview: the data store {store.name} could not be read: {exc}")
            return redirect(store)
        return render(request, self.template_name, {"store": store, "form": form, "rows": rows, "kept": kept,
                                                    "removed": removed})


class StoreKeyExportView(CapabilityRequiredMixin, View):
    """The key file, downloaded once; again only when the administrator confirms."""

    capability = MANAGE

    def post(self, request, pk):
        store = get_object_or_404(DataStore, pk=pk)
        form = KeyExportForm(request.POST, user=request.user)
        if not store.encrypted:
            messages.error(request, f"{store.name} is not encrypted: there is no key to export.")
            return redirect(store)
        if not form.is_valid():
            record_event(AuditAction.KEY_EXPORT, target=store, outcome=AuditOutcome.FAILURE,
                         message=f"key export of data store {store.name} refused: the password was not confirmed")
            messages.error(request, "The key was not exported: " + " ".join(
                error for errors in form.errors.values() for error in errors))
            return redirect(store)
        force = form.cleaned_data.get("force", False)
        try:
            key_file = export_key_file(store, passphrase=form.cleaned_data.get("passphrase") or None, force=force)
        except KeyAlreadyExportedError as exc:
            # The store itself records the export (also one made with the CLI).
            when = f"{store.key_exported_at:%Y-%m-%d %H:%M}" if store.key_exported_at else exc.exported_at
            messages.error(request, f"The key of {store.name} was exported on {when}. "
                                    "To export it again, confirm that you mean to.")
            return redirect(store)
        except (RepositoryError, OSError) as exc:
            messages.error(request, f"The key of {store.name} could not be exported: {exc}")
            return redirect(store)
        response = HttpResponse(key_file, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="sesamweb-{store.name}.key.json"'
        response["Cache-Control"] = "no-store"
        return response


class HistoryView(CapabilityRequiredMixin, View):
    """Backups and restores in one list, newest first (backups/history.py)."""

    template_name = "backups/history.html"

    def get(self, request):
        form = HistoryFilterForm(request.GET or None)
        page = Paginator(history(form.history_filter() if request.GET else HistoryFilter()), 50).get_page(
            request.GET.get("page"))
        return render(request, self.template_name, {
            "form": form, "page_obj": page, "paginator": page.paginator, "items": load_page(page.object_list),
            "querystring": _querystring(request),
        })


class PointListView(CapabilityRequiredMixin, ListView):
    template_name = "backups/point_list.html"
    context_object_name = "points"
    paginate_by = 50

    def get_queryset(self):
        self.filterset = RestorePointFilterSet(self.request.GET, queryset=RestorePoint.objects.select_related("store"))
        return self.filterset.qs

    def get_context_data(self, **kwargs):
        context = super().get_context_data(filterset=self.filterset, querystring=_querystring(self.request),
                                           can_protect=user_can(self.request.user, OPERATE), **kwargs)
        points = context["points"]
        live = {vm.uuid: vm for vm in VM.objects.filter(uuid__in=[p.vm_uuid for p in points], removed_at__isnull=True,
                                                           is_snapshot=False)}
        for point in points:
            point.live_vm = live.get(point.vm_uuid)
            point.restore_url = restore_url(point)
        return context


class PointDetailView(CapabilityRequiredMixin, View):
    """One restore point: the VM it holds, and per disk: restore it to an SR (a new disk, no
    VM) or download it as raw / VHD (the API's download, audited there)."""

    template_name = "backups/point_detail.html"

    def get(self, request, pk):
        point = get_object_or_404(RestorePoint.objects.select_related("store", "job"), pk=pk)
        try:
            details, problem = describe_point(point), ""
        except (RepositoryError, XvaError, OSError) as exc:
            details, problem = None, f"The restore point could not be read: {exc}"
        live = VM.objects.filter(uuid=point.vm_uuid, removed_at__isnull=True, is_snapshot=False).first()
        srs = [sr for sr in StorageRepository.objects.select_related("pool").order_by("pool__name", "name")
               if sr.content_type != "iso" and sr.type not in ("iso", "udev")]
        return render(request, self.template_name, {
            "point": point, "details": details, "problem": problem, "live_vm": live, "srs": srs,
            "restore_url": restore_url(point), "can_operate": user_can(request.user, OPERATE),
        })


class PointDiskRestoreView(CapabilityRequiredMixin, View):
    """Restore one disk of a restore point as a new disk on an SR (audited by request_disk_restore)."""

    capability = OPERATE

    def post(self, request, pk, key):
        point = get_object_or_404(RestorePoint.objects.select_related("store"), pk=pk)
        sr = StorageRepository.objects.select_related("pool").filter(pk=parse_id(request.POST.get("sr"))).first()
        if sr is None:
            messages.error(request, "Choose the SR to restore the disk to.")
            return redirect(point.get_absolute_url())
        try:
            run = request_disk_restore(point, key, sr, request.user, name=request.POST.get("name", "").strip()[:200])
        except RestorePlanError as exc:
            messages.error(request, "The disk was not restored: " + "; ".join(p.message for p in exc.problems))
            return redirect(point.get_absolute_url())
        except (RepositoryError, XvaError, OSError) as exc:
            messages.error(request, f"The disk was not restored: the restore point could not be read: {exc}")
            return redirect(point.get_absolute_url())
        messages.success(request, f"Restore of disk {key} of {point.vm_name} to {sr.name} queued: it starts as soon "
                                  "as a worker is free.", extra_tags="run-queued")
        return redirect(run.get_absolute_url())
