"""Notification pages: an overview (channels, rules, recent deliveries), channel and rule
forms, "send a test message" and the delivery log. Reading needs VIEW, changing MANAGE."""
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from sesamweb.accounts.permissions import CapabilityRequiredMixin
from sesamweb.accounts.roles import MANAGE, VIEW, user_can

from .choices import ChannelKind, DeliveryStatus
from .delivery import send_test
from .forms import CHANNEL_FORMS, RuleForm
from .models import Channel, Delivery, Rule
from .services import delete_channel, delete_rule, record_test, save_channel, save_rule

RECENT_DELIVERIES = 15


def _deliveries():
    return Delivery.objects.select_related("event", "channel", "fallback_of__channel")


class NotificationsView(CapabilityRequiredMixin, View):
    capability = VIEW

    def get(self, request):
        return render(request, "notify/overview.html", {
            "channels": Channel.objects.select_related("fallback"),
            "rules": Rule.objects.prefetch_related("channels"),
            "deliveries": _deliveries()[:RECENT_DELIVERIES],
            "can_manage": user_can(request.user, MANAGE),
        })


class ChannelCreateView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def _form_class(self, request):
        kind = request.GET.get("kind") or request.POST.get("kind_choice")
        return CHANNEL_FORMS.get(kind)

    def get(self, request, form=None):
        form_class = self._form_class(request)
        if form_class is None:
            return render(request, "notify/channel_kind.html", {"kinds": ChannelKind.choices})
        return render(request, "notify/channel_form.html", {"form": form or form_class(), "creating": True,
                                                            "kind_label": ChannelKind(form_class.kind).label})

    def post(self, request):
        form_class = self._form_class(request)
        if form_class is None:
            raise Http404("unknown channel kind")
        form = form_class(request.POST)
        if not form.is_valid():
            return self.get(request, form=form)
        channel = save_channel(form.apply(Channel()), secret=form.secret(), user=request.user)
        messages.success(request, f"Channel {channel.name} added. Send a test message to check it.")
        return redirect(channel.get_absolute_url())


class ChannelUpdateView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def get(self, request, pk, form=None):
        channel = get_object_or_404(Channel, pk=pk)
        form = form or CHANNEL_FORMS[channel.kind](instance=channel)
        return render(request, "notify/channel_form.html", {
            "form": form, "channel": channel, "creating": False, "kind_label": channel.get_kind_display(),
            "deliveries": _deliveries().filter(channel=channel)[:RECENT_DELIVERIES],
        })

    def post(self, request, pk):
        channel = get_object_or_404(Channel, pk=pk)
        form = CHANNEL_FORMS[channel.kind](request.POST, instance=channel)
        if not form.is_valid():
            return self.get(request, pk, form=form)
        save_channel(form.apply(channel), secret=form.secret(), user=request.user)
        messages.success(request, f"Channel {channel.name} saved.")
        return redirect(channel.get_absolute_url())


class ChannelTestView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def post(self, request, pk):
        channel = get_object_or_404(Channel, pk=pk)
        delivery = send_test(channel)
        record_test(channel, delivery, user=request.user)
        if delivery.status == DeliveryStatus.SENT:
            messages.success(request, f"Test message delivered to {channel.name}.")
        else:
            messages.error(request, f"Test message to {channel.name} failed: {delivery.last_error}")
        return redirect(channel.get_absolute_url())


class ChannelDeleteView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def post(self, request, pk):
        channel = get_object_or_404(Channel, pk=pk)
        name = channel.name
        delete_channel(channel, user=request.user)
        messages.success(request, f"Channel {name} removed.")
        return redirect("notify:overview")


class RuleCreateView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def get(self, request, form=None, rule=None):
        return render(request, "notify/rule_form.html", {"form": form or RuleForm(instance=rule), "rule": rule})

    def post(self, request, pk=None):
        rule = get_object_or_404(Rule, pk=pk) if pk else None
        form = RuleForm(request.POST, instance=rule)
        if not form.is_valid():
            return self.get(request, form=form, rule=rule)
        saved = save_rule(form.save(commit=False), channels=form.cleaned_data["channels"], user=request.user)
        messages.success(request, f"Rule {saved.name} saved.")
        return redirect("notify:overview")


class RuleUpdateView(RuleCreateView):
    def get(self, request, pk=None, form=None, rule=None):
        return super().get(request, form=form, rule=rule or get_object_or_404(Rule, pk=pk))


class RuleDeleteView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def post(self, request, pk):
        rule = get_object_or_404(Rule, pk=pk)
        name = rule.name
        delete_rule(rule, user=request.user)
        messages.success(request, f"Rule {name} removed.")
        return redirect("notify:overview")


class DeliveryListView(CapabilityRequiredMixin, View):
    capability = VIEW

    def get(self, request):
        deliveries = _deliveries()
        status = request.GET.get("status", "")
        if status in DeliveryStatus.values:
            deliveries = deliveries.filter(status=status)
        channel = request.GET.get("channel", "")
        if channel.isdigit():
            deliveries = deliveries.filter(channel_id=int(channel))
        page = Paginator(deliveries, 50).get_page(request.GET.get("page"))
        return render(request, "notify/delivery_list.html", {
            "page_obj": page, "statuses": DeliveryStatus.choices, "status": status,
            "channels": Channel.objects.all(), "channel": channel,
        })
