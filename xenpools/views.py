import secrets

from django.contrib import messages
from django.db.models import Count, Prefetch, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View
from django.views.generic import DetailView, ListView

from sesamweb.accounts.permissions import MANAGE, OPERATE, CapabilityRequiredMixin
from sesamweb.secrets import decrypt_secret, encrypt_secret

from .choices import PowerState
from .connection import Address, PoolCertificateUnknown, PoolConnection, PoolError, parse_address
from .extensions import vm_list_extensions
from .filters import PoolFilterSet, VMFilterSet
from .forms import PoolConnectionForm, PoolEditForm
from .models import VM, VIF, Pool, StorageRepository, VirtualDisk
from .registration import delete_pool, register_pool, update_pool
from .sync import SyncAlreadyRunning, request_sync, sync_state


def _vm_counts():
    live = Q(vms__removed_at__isnull=True, vms__is_snapshot=False)
    return {
        "vm_count": Count("vms", filter=live),
        "running_count": Count("vms", filter=live & Q(vms__power_state=PowerState.RUNNING)),
    }


class PoolListView(CapabilityRequiredMixin, ListView):
    template_name = "xenpools/pool_list.html"
    context_object_name = "pools"

    def get_queryset(self):
        self.filterset = PoolFilterSet(self.request.GET, queryset=Pool.objects.annotate(**_vm_counts()))
        return self.filterset.qs

    def get_context_data(self, **kwargs):
        return super().get_context_data(filterset=self.filterset, **kwargs)


class PoolDetailView(CapabilityRequiredMixin, DetailView):
    template_name = "xenpools/pool_detail.html"
    context_object_name = "pool"

    def get_queryset(self):
        return Pool.objects.annotate(**_vm_counts()).prefetch_related(
            "hosts",
            Prefetch("srs", queryset=StorageRepository.objects.prefetch_related("hosts")),
            "networks",
        )

    def get_context_data(self, **kwargs):
        host_vm_counts = dict(VM.objects.filter(pool=self.object, removed_at__isnull=True, is_snapshot=False)
                              .values_list("host").annotate(n=Count("pk")))
        for host in self.object.hosts.all():
            host.vm_count = host_vm_counts.get(host.pk, 0)
        return super().get_context_data(sync=sync_state(self.object), **kwargs)

    def get_template_names(self):
        # backups/pool_detail.html extends ours with the pool's clean-up card (leftovers of
        # interrupted backups and restores), as backups/vm_detail.html does for the VM page.
        return ["backups/pool_detail.html", self.template_name]


class PoolAddView(CapabilityRequiredMixin, View):
    """Wizard: Test connection (shows what was found, or a clear error, or a fingerprint to
    confirm) -> Add pool (saves, audits, queues the first sync on a worker)."""

    capability = MANAGE
    template_name = "xenpools/pool_form.html"

    def get(self, request):
        return render(request, self.template_name, {"form": PoolConnectionForm(), "adding": True})

    def post(self, request):
        form = PoolConnectionForm(request.POST)
        context = {"form": form, "adding": True}
        if form.is_valid():
            data = form.cleaned_data
            password = data["password"] or recall_password(request, data["draft"])
            if not password:
                form.add_error("password", "Enter the password.")
                return render(request, self.template_name, context)
            form = _with_draft(form, remember_password(request, password))
            context["form"] = form
            probe, context = _test_connection(request, form, password, context)
            if probe is not None and "add" in request.POST:
                forget_password(request)
                pool = register_pool(data["name"], data["address"], data["username"], password, probe, sync=False)
                request_sync(pool, request.user)
                messages.success(request, f"Pool {pool.name} added; its first sync is running.")
                return redirect(pool)
        return render(request, self.template_name, context)


PASSWORD_DRAFT = "pool-password-draft"


def remember_password(request, password) -> str:
    """Keep a typed pool password for the next step of the wizard, encrypted in the session, so
    the page never sends it back to the browser; returns the token the form carries."""
    token = secrets.token_urlsafe(16)
    request.session[PASSWORD_DRAFT] = {"token": token,
                                       "secret": encrypt_secret(password, context=f"pool-draft:{token}")}
    return token


def recall_password(request, token) -> str:
    draft = request.session.get(PASSWORD_DRAFT) or {}
    if not token or draft.get("token") != token:
        return ""
    return decrypt_secret(draft["secret"], context=f"pool-draft:{token}")


def forget_password(request):
    request.session.pop(PASSWORD_DRAFT, None)


def _with_draft(form, token):
    """The same bound form with the password replaced by the draft token."""
    data = form.data.copy()
    data["password"], data["draft"] = "", token
    fresh = type(form)(data, pool=form.pool, initial=form.initial)
    fresh.is_valid()
    return fresh


def _test_connection(request, form, password, context, pinned=None):
    """Run PoolConnection.probe for a bound, valid form; returns (probe or None, context)."""
    data = form.cleaned_data
    try:
        probe = PoolConnection.probe(data["address"], data["username"], password,
                                     fingerprint=form.confirmed_fingerprint() or pinned)
    except PoolCertificateUnknown as exc:
        fresh = form.data.copy()
        fresh["fingerprint"], fresh["trust_certificate"] = exc.fingerprint, ""
        entered = parse_address(data["address"])
        certificate_host = exc.address.rsplit(":", 1)[0]
        if certificate_host != entered.host:
            # The entered host is a member that sent us to its master: confirm the master's
            # certificate and talk to the master directly from now on.
            fresh["address"] = Address(entered.scheme, certificate_host, entered.port).url()
            context["redirected_from"] = entered.host
        form = type(form)(fresh, pool=form.pool, initial=form.initial)
        form.is_valid()
        context.update(form=form, certificate=exc)
        return None, context
    except PoolError as exc:
        context["error"] = str(exc)
        return None, context
    context["probe"] = probe
    return probe, context


class PoolEditView(CapabilityRequiredMixin, View):
    capability = MANAGE
    template_name = "xenpools/pool_form.html"

    def get(self, request, pk):
        pool = get_object_or_404(Pool, pk=pk)
        form = PoolEditForm(pool=pool, initial={"name": pool.name, "address": pool.url, "username": pool.username})
        return render(request, self.template_name, {"form": form, "pool": pool})

    def post(self, request, pk):
        pool = get_object_or_404(Pool, pk=pk)
        form = PoolEditForm(request.POST, pool=pool, initial={"address": pool.url})
        context = {"form": form, "pool": pool}
        if form.is_valid():
            data = form.cleaned_data
            new_password = data["password"] or recall_password(request, data["draft"])
            if new_password:
                form = _with_draft(form, remember_password(request, new_password))
                context["form"] = form
            password = new_password or pool.get_password()
            probe, context = _test_connection(request, form, password, context,
                                              pinned=pool.fingerprints.get(pool.master_address))
            if probe is not None and "save" in request.POST:
                forget_password(request)
                update_pool(pool, name=data["name"], username=data["username"], password=new_password or None,
                            probe=probe)
                messages.success(request, f"Pool {pool.name} updated; the connection test passed.")
                return redirect(pool)
        return render(request, self.template_name, context)


class PoolDeleteView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def get(self, request, pk):
        pool = get_object_or_404(Pool.objects.annotate(**_vm_counts()), pk=pk)
        return render(request, "xenpools/pool_confirm_delete.html", {"pool": pool})

    def post(self, request, pk):
        pool = get_object_or_404(Pool, pk=pk)
        name = pool.name
        delete_pool(pool)
        messages.success(request, f"Pool {name} removed from the console (nothing was changed on the pool).")
        return redirect("xenpools:pool_list")


class PoolSyncView(CapabilityRequiredMixin, View):
    """Sync now: queued on a worker; the pool page shows its progress and outcome live."""

    capability = OPERATE

    def post(self, request, pk):
        pool = get_object_or_404(Pool, pk=pk)
        try:
            request_sync(pool, request.user)
        except SyncAlreadyRunning as exc:
            messages.warning(request, str(exc))
        else:
            messages.info(request, f"Sync of {pool.name} started; its progress shows below.")
        return HttpResponseRedirect(reverse("xenpools:pool", args=[pool.pk]))


class VMListView(CapabilityRequiredMixin, ListView):
    template_name = "xenpools/vm_list.html"
    context_object_name = "vms"
    paginate_by = 50

    def get_queryset(self):
        queryset = VM.objects.filter(is_snapshot=False).select_related("pool", "host").order_by("name", "pk")
        data = self.request.GET.copy()
        data.setdefault("presence", "present")
        self.filterset = VMFilterSet(data, queryset=queryset)
        queryset = self.filterset.qs
        for extension in vm_list_extensions():
            queryset = extension.filter_queryset(self, queryset)
        return queryset

    def get_template_names(self):
        # backups/vm_list.html (protection columns, filters, bulk actions) extends ours, as
        # backups/vm_detail.html does for the VM page; see xenpools/extensions.py.
        return ["backups/vm_list.html", self.template_name]

    def get_context_data(self, **kwargs):
        query = self.request.GET.copy()
        query.pop("page", None)
        context = super().get_context_data(filterset=self.filterset, querystring=query.urlencode(),
                                           current_ordering=self.request.GET.get("ordering", "name"), **kwargs)
        for extension in vm_list_extensions():
            context.update(extension.context(self, context["vms"]))
        return context


class VMDetailView(CapabilityRequiredMixin, DetailView):
    context_object_name = "vm"

    def get_template_names(self):
        # backups/vm_detail.html (when the backups app ships it) extends ours and fills the
        # "vm_backups" block with Back up now and the restore points.
        return ["backups/vm_detail.html", "xenpools/vm_detail.html"]

    def get_queryset(self):
        return VM.objects.select_related("pool", "host", "snapshot_of").prefetch_related(
            Prefetch("disks", queryset=VirtualDisk.objects.select_related("vdi__sr")),
            Prefetch("vifs", queryset=VIF.objects.select_related("network")),
            Prefetch("snapshots", queryset=VM.objects.order_by("-snapshot_time")),
        )
