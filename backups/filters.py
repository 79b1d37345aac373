"""FilterSets shared by the backup pages and the REST API (declared once)."""
import django_filters
from django import forms
from django.db.models import Q

from .choices import BackupKind, BackupMethod, RunStatus, Trigger, VerifyState
from .models import BackupJob, BackupRun, DataStore, RestorePoint, VmBackup


class BackupRunFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=RunStatus.choices, empty_label="Any status")
    job = django_filters.ModelChoiceFilter(queryset=BackupJob.objects.all(), empty_label="Any job", label="Job")
    vm = django_filters.CharFilter(method="with_vm", label="VM name or UUID")
    store = django_filters.ModelChoiceFilter(queryset=DataStore.objects.all(), field_name="vm_backups__store",
                                             distinct=True, empty_label="All data stores", label="Data store")
    since = django_filters.DateFilter(field_name="created_at", lookup_expr="date__gte", label="From",
                                      widget=forms.DateInput(attrs={"type": "date"}))
    until = django_filters.DateFilter(field_name="created_at", lookup_expr="date__lte", label="Until",
                                      widget=forms.DateInput(attrs={"type": "date"}))
    trigger = django_filters.ChoiceFilter(choices=Trigger.choices, empty_label="Any trigger")

    class Meta:
        model = BackupRun
        fields = ["status", "job", "trigger", "vm", "store", "since", "until"]

    def with_vm(self, queryset, name, value):
        value = value.strip()
        matching = Q(vm_backups__vm_name__icontains=value) | Q(vm_backups__vm_uuid__istartswith=value)
        return queryset.filter(pk__in=BackupRun.objects.filter(matching).values("pk"))



class RestorePointFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="VM name or UUID")
    vm_uuid = django_filters.CharFilter(field_name="vm_uuid", label="VM UUID")
    store = django_filters.ModelChoiceFilter(queryset=DataStore.objects.all(), empty_label="All data stores",
                                             label="Data store")
    method = django_filters.ChoiceFilter(choices=BackupMethod.choices, empty_label="Any method")
    kind = django_filters.ChoiceFilter(choices=BackupKind.choices, empty_label="Full or incremental")
    verify_state = django_filters.ChoiceFilter(choices=VerifyState.choices, empty_label="Any verify state",
                                               label="Verify state")
    job = django_filters.ModelChoiceFilter(queryset=BackupJob.objects.all(), empty_label="Any job", label="Job")
    protected = django_filters.BooleanFilter(label="Protected by hand")

    class Meta:
        model = RestorePoint
        fields = ["q", "vm_uuid", "store", "method", "kind", "verify_state", "job", "protected"]

    def search(self, queryset, name, value):
        value = value.strip()
        return queryset.filter(Q(vm_name__icontains=value) | Q(vm_uuid__istartswith=value))


class VmBackupFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    job = django_filters.ModelChoiceFilter(queryset=BackupJob.objects.all(), field_name="run__job")

    class Meta:
        model = VmBackup
        fields = ["run", "status", "job", "vm_uuid", "store"]


class DataStoreFilterSet(django_filters.FilterSet):
    class Meta:
        model = DataStore
        fields = ["kind", "encrypted", "cluster"]
