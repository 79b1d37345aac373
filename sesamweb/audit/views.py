from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from sesamweb.accounts.permissions import CapabilityRequiredMixin
from sesamweb.accounts.roles import AUDIT

from .chain import verify_chain
from .choices import AuditAction
from .export import EXPORTS
from .filters import AuditEventFilterSet
from .log import record_event
from .models import AuditEvent
from .objects import describe
from .paging import cursor, seek_page
from .verification import checks_inline, latest_verification, log_length, queue_verification


def _filtered(request):
    return AuditEventFilterSet(request.GET or None, queryset=AuditEvent.objects.all())


class AuditEventListView(CapabilityRequiredMixin, View):
    capability = AUDIT
    paginate_by = 50

    def get(self, request, chain_report=None):
        filterset = _filtered(request)
        page = seek_page(filterset.qs, before=cursor(request.GET.get("before")),
                         after=cursor(request.GET.get("after")), size=self.paginate_by)
        objects = describe(page.events)
        for event in page.events:
            event.object = objects.get(event.pk)
        query = request.GET.copy()
        for key in ("page", "before", "after"):
            query.pop(key, None)
        return render(request, "audit/event_list.html", {
            "filter": filterset, "page": page, "query": query.urlencode(), "chain_report": chain_report,
            "last_verification": None if chain_report else latest_verification(),
        })


class AuditEventDetailView(CapabilityRequiredMixin, View):
    capability = AUDIT

    def get(self, request, pk):
        event = get_object_or_404(AuditEvent, pk=pk)
        event.object = describe([event]).get(event.pk)
        return render(request, "audit/event_detail.html", {"event": event})


class VerifyChainView(AuditEventListView):
    """POST: check the whole chain now and show the result above the list; a long log is
    checked by a worker, which records the result in the log (verification.py)."""

    def post(self, request):
        if checks_inline():
            return self.get(request, chain_report=verify_chain())
        queue_verification(request.user)
        messages.info(request, f"Checking the chain of {log_length():,} events on a worker: the result will be "
                               "recorded in the log as \"Audit chain verified\" and shown here.")
        return redirect("audit:event_list")


class AuditExportView(CapabilityRequiredMixin, View):
    """The filtered log as CSV or JSON, streamed; exporting is itself recorded."""

    capability = AUDIT
    export_format = "csv"

    def get(self, request):
        filterset = _filtered(request)
        events = filterset.qs if filterset.is_valid() or not filterset.is_bound else AuditEvent.objects.none()
        record_event(AuditAction.AUDIT_EXPORT, target_type="audit.auditevent",
                     message=f"Audit log exported as {self.export_format.upper()} "
                             f"({request.GET.urlencode() or 'no filter'})")
        return EXPORTS[self.export_format](events)
