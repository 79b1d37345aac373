"""Bulk actions posted by the VM list (thin: backups/jobs/bulk.py does the work)."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from sesamweb.accounts.permissions import MANAGE, OPERATE, CapabilityRequiredMixin
from xenpools.models import VM

from ..models import BackupJob, DataStore
from .bulk import BulkActionError, add_vms_to_job, back_up_now

SKIPPED_SHOWN = 10


class _BulkView(CapabilityRequiredMixin, View):
    def selected_vms(self):
        ids = [value for value in self.request.POST.getlist("vm") if value.isdigit()]
        return list(VM.objects.filter(pk__in=ids, is_snapshot=False).select_related("pool").order_by("name", "pk"))

    def posted_pk(self, name):
        value = self.request.POST.get(name, "")
        return int(value) if value.isdigit() else 0          # not found, rather than an error

    def back(self):
        target = self.request.POST.get("next", "")
        if url_has_allowed_host_and_scheme(target, allowed_hosts={self.request.get_host()},
                                           require_https=self.request.is_secure()):
            return redirect(target)
        return redirect("xenpools:vm_list")

    def report_skipped(self, skipped):
        for vm, reason in skipped[:SKIPPED_SHOWN]:
            messages.warning(self.request, f"{vm.name} skipped: {reason}.")
        if len(skipped) > SKIPPED_SHOWN:
            messages.warning(self.request, f"{len(skipped) - SKIPPED_SHOWN} more VM(s) skipped.")


class VmsAddToJobView(_BulkView):
    capability = MANAGE

    def post(self, request):
        vms = self.selected_vms()
        job = get_object_or_404(BackupJob, pk=self.posted_pk("job"))
        if not vms:
            messages.error(request, "Select at least one VM.")
            return self.back()
        try:
            result = add_vms_to_job(job, vms, user=request.user)
        except BulkActionError as exc:
            messages.error(request, f"Nothing added: {exc}.")
            return self.back()
        if result.done:
            messages.success(request, f"{len(result.done)} VM(s) added to job {job.name}.")
        self.report_skipped(result.skipped)
        return self.back()


class VmsBackUpNowView(_BulkView):
    capability = OPERATE

    def post(self, request):
        vms = self.selected_vms()
        store = get_object_or_404(DataStore, pk=self.posted_pk("store"))
        if not vms:
            messages.error(request, "Select at least one VM.")
            return self.back()
        result = back_up_now(vms, store=store, user=request.user)
        if result.done:
            messages.success(request, f"Backup of {len(result.done)} VM(s) to {store.name} queued.")
        self.report_skipped(result.skipped)
        return self.back()
