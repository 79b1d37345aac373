"""The VM list's protection columns, filters and bulk actions (registered with xenpools at
startup, see xenpools/extensions.py; the cells are in templates/backups/vm_list.html)."""
from django.urls import reverse

from sesamweb.accounts.roles import MANAGE, OPERATE, user_can
from xenpools.extensions import VMListExtension
from xenpools.models import VM

from ..models import BackupJob, DataStore
from .choices import Protection, SelectionMode
from .protection import AT_RISK, protection_map, vm_ids_with

# The status filter: one status, or "at risk" (the dashboard links to it: missed or never).
FILTER_STATUSES = {**{value: (value,) for value in Protection.values}, "at_risk": AT_RISK}
FILTER_CHOICES = [*Protection.choices, ("at_risk", "At risk (missed or never)")]


class ProtectionColumns(VMListExtension):
    def _filters(self, request):
        status = request.GET.get("protection", "")
        job = request.GET.get("job", "")
        return (status if status in FILTER_STATUSES else ""), (int(job) if job.isdigit() else None)

    def filter_queryset(self, view, queryset):
        status, job_id = self._filters(view.request)
        if not status and not job_id:
            return queryset
        # Status depends on now and on every job: evaluate all VMs once (bounded queries),
        # then narrow the list to the matching ids.
        view.protection = protection_map()
        return queryset.filter(pk__in=vm_ids_with(view.protection, status=FILTER_STATUSES.get(status), job_id=job_id))

    def context(self, view, vms):
        request = view.request
        protection = getattr(view, "protection", None)
        if protection is None:
            protection = protection_map(VM.objects.filter(pk__in=[vm.pk for vm in vms]))
        for vm in vms:
            vm.protection = protection.get(vm.pk)
        status, job_id = self._filters(request)
        can_manage, can_operate = user_can(request.user, MANAGE), user_can(request.user, OPERATE)
        jobs = list(BackupJob.objects.only("pk", "name", "selection").order_by("name"))
        return {
            "protection_choices": FILTER_CHOICES, "protection_filter": status, "job_filter": job_id,
            "filter_jobs": jobs,
            "explicit_jobs": [job for job in jobs if job.selection == SelectionMode.EXPLICIT] if can_manage else [],
            "bulk_stores": list(DataStore.objects.only("pk", "name")) if can_operate else [],
            "can_manage": can_manage, "can_operate": can_operate, "can_bulk": can_manage or can_operate,
            "bulk_next": request.get_full_path(),
            "bulk_add_url": reverse("backups:vms_add_to_job"), "bulk_backup_url": reverse("backups:vms_back_up_now"),
        }
