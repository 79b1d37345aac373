from django.http import JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views import View

from sesamweb.accounts.permissions import CapabilityRequiredMixin
from sesamweb.accounts.roles import VIEW

from .summary import dashboard_summary


class DashboardView(CapabilityRequiredMixin, View):
    capability = VIEW

    def get(self, request):
        return render(request, "dashboard/index.html", {"summary": dashboard_summary()})


class DashboardSummaryView(CapabilityRequiredMixin, View):
    """The dashboard's figures as JSON: the page refetches them when a live event says so."""

    capability = VIEW

    def get(self, request):
        summary = dashboard_summary()
        context = {"summary": summary}
        return JsonResponse({
            **summary.as_json(),
            "alerts_html": render_to_string("dashboard/alerts.html", context, request=request),
            "running_html": render_to_string("dashboard/running.html", context, request=request),
        })
