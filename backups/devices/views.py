"""Device server pages: the list (with registration tokens), one server, creating a token
(shown once), revoking a token or a server, giving a data store to a server. Thin: the work
is in registration.py and stores.py; every change is audited there."""
from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View
from django.views.generic import DetailView, ListView

from sesamweb.accounts.permissions import MANAGE, CapabilityRequiredMixin
from sesamweb.accounts.roles import user_can

from .forms import RegistrationTokenForm, StoreAssignmentForm
from .models import DeviceServer, RegistrationToken
from .registration import RegistrationError, issue_token, revoke_server, revoke_token
from .routing import waiting_on_device_servers
from .stores import AssignmentError, activity, assign_store


class DeviceServerListView(CapabilityRequiredMixin, ListView):
    template_name = "backups/devices/server_list.html"
    context_object_name = "servers"
    queryset = DeviceServer.objects.prefetch_related("stores")

    def get_context_data(self, token_form=None, **kwargs):
        context = super().get_context_data(**kwargs)
        for server in context["servers"]:
            server.activity = activity(server)
        can_manage = user_can(self.request.user, MANAGE)
        context.update(can_manage=can_manage, token_form=token_form or RegistrationTokenForm(),
                       tokens=RegistrationToken.objects.select_related("used_by")[:20] if can_manage else [])
        return context


class DeviceServerDetailView(CapabilityRequiredMixin, DetailView):
    template_name = "backups/devices/server_detail.html"
    context_object_name = "server"
    queryset = DeviceServer.objects.prefetch_related("stores")

    def get_context_data(self, assign_form=None, **kwargs):
        server = self.object
        return super().get_context_data(
            activity=activity(server), can_manage=user_can(self.request.user, MANAGE),
            waiting=[w for w in waiting_on_device_servers() if w.server.pk == server.pk],
            assign_form=assign_form or StoreAssignmentForm(server=server),
            down_after=int(settings.SESAM_DEVICE_DOWN_AFTER_SECONDS), **kwargs)


class RegistrationTokenCreateView(CapabilityRequiredMixin, View):
    """POST: a new one-time token, shown on this answer only."""

    capability = MANAGE

    def post(self, request):
        form = RegistrationTokenForm(request.POST)
        if form.is_valid():
            try:
                row, token = issue_token(form.cleaned_data["name"], site=form.cleaned_data["site"],
                                         user=request.user, hours=form.cleaned_data["hours"])
            except RegistrationError as exc:
                form.add_error("name", str(exc))
            else:
                response = render(request, "backups/devices/token_created.html", {"row": row, "token": token})
                response["Cache-Control"] = "no-store"
                return response
        view = DeviceServerListView()
        view.setup(request)
        view.object_list = view.get_queryset()
        return render(request, view.template_name, view.get_context_data(token_form=form), status=400)


class RegistrationTokenRevokeView(CapabilityRequiredMixin, View):
    capability = MANAGE
    model = RegistrationToken

    def post(self, request, pk):
        row = get_object_or_404(RegistrationToken, pk=pk)
        if revoke_token(row, user=request.user):
            messages.success(request, f"The registration token for {row.name} is revoked.")
        else:
            messages.error(request, f"The registration token for {row.name} is {row.state()}: nothing to revoke.")
        return redirect("backups:device_server_list")


class DeviceServerRevokeView(CapabilityRequiredMixin, View):
    capability = MANAGE
    model = DeviceServer

    def post(self, request, pk):
        server = get_object_or_404(DeviceServer, pk=pk)
        if revoke_server(server, user=request.user):
            messages.success(request, f"Device server {server.name} is revoked: it gets no more work or secrets, "
                                      "and its runner stops at its next heartbeat.")
        else:
            messages.error(request, f"Device server {server.name} was revoked already.")
        return redirect(server)


class StoreAssignView(CapabilityRequiredMixin, View):
    capability = MANAGE
    model = DeviceServer

    def post(self, request, pk):
        server = get_object_or_404(DeviceServer, pk=pk)
        form = StoreAssignmentForm(request.POST, server=server)
        if form.is_valid():
            try:
                assign_store(form.cleaned_data["store"], server, user=request.user)
            except AssignmentError as exc:
                form.add_error("store", str(exc))
            else:
                messages.success(request, f"Data store {form.cleaned_data['store']} now belongs to {server.name}.")
                return redirect(server)
        view = DeviceServerDetailView()
        view.setup(request, pk=pk)
        view.object = server
        return render(request, view.template_name, view.get_context_data(assign_form=form), status=400)
