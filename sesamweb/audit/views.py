from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.views import View

from sesamweb.accounts.permissions import CapabilityRequiredMixin
from sesamweb.accounts.roles import AUDIT

from .chain import verify_chain
from .choices import AuditAction
from .export import audit_csv_response
from .filters import AuditEventFilterSet
from .log import record_event
from .models import AuditEvent


def _filtered(request):
    return AuditEventFilterSet(request.GET or None, queryset=AuditEvent.objects.all())


class AuditEventListView(CapabilityRequiredMixin, View):
    capability = AUDIT
    paginate_by = 50

    def get(self, request, chain_report=None):
        filterset = _filtered(request)
        page = Paginator(filterset.qs.order_by("-sequence"), self.paginate_by).get_page(request.GET.get("page"))
        query = request.GET.copy()
        query.pop("page", None)
        return render(request, "audit/event_list.html", {
            "filter": filterset, "page_obj": page, "query": query.urlencode(), "chain_report": chain_report,
        })


class AuditEventDetailView(CapabilityRequiredMixin, View):
    capability = AUDIT

    def get(self, request, pk):
        return render(request, "audit/event_detail.html", {"event": get_object_or_404(AuditEvent, pk=pk)})


class VerifyChainView(AuditEventListView):
    """POST: check the whole chain now and show the result above the list."""

    def post(self, request):
        return self.get(request, chain_report=verify_chain())


class AuditExportView(CapabilityRequiredMixin, View):
    capability = AUDIT

    def get(self, request):
        events = _filtered(request).qs
        record_event(AuditAction.AUDIT_EXPORT, target_type="audit.auditevent",
                     message=f"Audit log exported as CSV ({request.GET.urlencode() or 'no filter'})")
        return audit_csv_response(events)
