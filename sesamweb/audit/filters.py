"""Audit log filters, shared by the page, the exports and the API.

Every filter is one an index serves together with the page's ORDER BY sequence (see the
indexes on AuditEvent): equality on user, action, outcome, object kind and id, and a range
of `created` for the dates (whole days in the console's time zone, never a function of the
column). Free text (`q`) is a substring search: on a large log, combine it with another
filter or a date range."""
from datetime import datetime, time, timedelta

import django_filters
from django import forms
from django.db.models import F, Max, Min, Q
from django.utils import timezone

from .choices import AuditAction, AuditOutcome
from .models import AuditEvent
from .objects import kind_choices


def _day_start(day):
    return timezone.make_aware(datetime.combine(day, time.min))


class AuditEventFilterSet(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor_username", label="User", help_text="Exact user name")
    action = django_filters.ChoiceFilter(choices=AuditAction.choices, empty_label="Any action")
    target = django_filters.CharFilter(method="filter_target", label="Object",
                                       help_text="Name, kind or id")
    target_type = django_filters.ChoiceFilter(choices=kind_choices, label="Object kind", empty_label="Any kind")
    target_id = django_filters.CharFilter(field_name="target_id", label="Object id",
                                          widget=forms.HiddenInput)
    outcome = django_filters.ChoiceFilter(choices=AuditOutcome.choices, empty_label="Any outcome")
    since = django_filters.DateFilter(method="filter_since", label="From",
                                      widget=forms.DateInput(attrs={"type": "date"}))
    until = django_filters.DateFilter(method="filter_until", label="To", help_text="Included",
                                      widget=forms.DateInput(attrs={"type": "date"}))
    q = django_filters.CharFilter(method="filter_text", label="Text", help_text="In message, object, user, source")

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "target", "target_type", "target_id", "outcome", "since", "until", "q"]

    def filter_target(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(target_repr__icontains=value) | Q(target_type__iexact=value) | Q(target_id=value))

    def filter_since(self, queryset, name, value):
        return queryset.filter(created__gte=_day_start(value))

    def filter_until(self, queryset, name, value):
        return queryset.filter(created__lt=_day_start(value + timedelta(days=1)))

    def filter_queryset(self, queryset):
        """Dates also bound `sequence`: the exact first and last sequence of the days asked
        for (an index-only scan of (created, sequence) over those days), so that the page's
        ORDER BY sequence DESC LIMIT starts inside the range instead of walking down to it
        from the newest event (PostgreSQL's planner guesses that walk short). Costs at most
        what a COUNT of those days does."""
        queryset = super().filter_queryset(queryset)
        since, until = self.form.cleaned_data.get("since"), self.form.cleaned_data.get("until")
        if since is None and until is None:
            return queryset
        days = AuditEvent.objects.all()
        if since is not None:
            days = self.filter_since(days, "since", since)
        if until is not None:
            days = self.filter_until(days, "until", until)
        # "+ 0": not MIN(sequence), which PostgreSQL answers by walking the sequence index
        # from one end until it meets those days (half the log for a week six months ago).
        bounds = days.aggregate(first=Min(F("sequence") + 0), last=Max(F("sequence") + 0))
        if bounds["first"] is None:
            return queryset.none()
        return queryset.filter(sequence__gte=bounds["first"], sequence__lte=bounds["last"])

    def filter_text(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(message__icontains=value) | Q(target_repr__icontains=value)
                               | Q(actor_username__icontains=value) | Q(source__icontains=value))
