"""Replication policies in the console (the CLI has `manage.py replication` too): the list with
each policy's last result, create, edit, remove. Reading is for every role; changing is for
administrators, and audited (backups.restore.replication.save_policy / remove_policy)."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View

from sesamweb.accounts.permissions import MANAGE, CapabilityRequiredMixin
from sesamweb.accounts.roles import user_can
from xenpools.models import VM

from ..models import ReplicationPolicy
from .forms import ReplicationPolicyForm
from .replication import policy_results, remove_policy, save_policy


class ReplicationPolicyListView(CapabilityRequiredMixin, View):
    def get(self, request):
        policies = list(ReplicationPolicy.objects.select_related("target_pool", "target_sr", "source_store"))
        results = policy_results()
        names = dict(VM.objects.filter(uuid__in={u for p in policies for u in p.vm_uuids}, is_snapshot=False)
                     .values_list("uuid", "name"))
        for policy in policies:
            policy.result = results.get(policy.pk, {"rows": [], "failed": 0, "last": None})
            policy.vm_names = [names.get(uuid, f"{uuid[:8]}… (no longer in a pool)") for uuid in policy.vm_uuids]
        return render(request, "backups/restore/replication_list.html", {
            "policies": policies, "can_manage": user_can(request.user, MANAGE)})


class ReplicationPolicyEditView(CapabilityRequiredMixin, View):
    """Add (no pk) or change a policy."""

    capability = MANAGE

    def get(self, request, pk=None):
        policy = get_object_or_404(ReplicationPolicy, pk=pk) if pk else None
        return self._page(request, policy, ReplicationPolicyForm(instance=policy))

    def post(self, request, pk=None):
        policy = get_object_or_404(ReplicationPolicy, pk=pk) if pk else None
        form = ReplicationPolicyForm(request.POST, instance=policy)
        if not form.is_valid():
            return self._page(request, policy, form, status=400)
        saved = save_policy(form.save(commit=False), user=request.user)
        messages.success(request, f"Replication policy {saved.name} {'changed' if policy else 'created'}.")
        return redirect(reverse("backups:replication_list") + f"#policy-{saved.pk}")

    @staticmethod
    def _page(request, policy, form, status=200):
        return render(request, "backups/restore/replication_form.html", {"policy": policy, "form": form},
                      status=status)


class ReplicationPolicyRemoveView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def post(self, request, pk):
        policy = get_object_or_404(ReplicationPolicy, pk=pk)
        remove_policy(policy, user=request.user)
        messages.success(request, f"Replication policy {policy.name} removed; its replicas stay on the pool.")
        return redirect("backups:replication_list")
