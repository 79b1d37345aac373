"""Audit log filters, shared by the page, the CSV export and the API."""
import django_filters
from django import forms
from django.db.models import Q

from .choices import AuditAction, AuditOutcome
from .models import AuditEvent


class AuditEventFilterSet(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor_username", lookup_expr="iexact", label="User")
    action = django_filters.ChoiceFilter(choices=AuditAction.choices, empty_label="Any action")
    target = django_filters.CharFilter(method="filter_target", label="Object",
                                       help_text="Name, type or id of the object changed")
    outcome = django_filters.ChoiceFilter(choices=AuditOutcome.choices, empty_label="Any outcome")
    since = django_filters.DateFilter(field_name="created", lookup_expr="date__gte", label="From",
                                      widget=forms.DateInput(attrs={"type": "date"}))
    until = django_filters.DateFilter(field_name="created", lookup_expr="date__lte", label="To",
                                      widget=forms.DateInput(attrs={"type": "date"}))

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "target", "outcome", "since", "until"]

    def filter_target(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(target_repr__icontains=value) | Q(target_type__iexact=value) | Q(target_id=value))
