"""FilterSets shared by the UI lists and the API (declared once)."""
import django_filters
from django.db.models import Q

from .choices import OsFamily, PoolHealth, PowerState
from .models import VM, Host, Network, Pool, StorageRepository


class PoolFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    health = django_filters.ChoiceFilter(choices=PoolHealth.choices)

    class Meta:
        model = Pool
        fields = ["q", "health"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(address__icontains=value) | Q(pool_label__icontains=value))


class VMFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Name or UUID")
    pool = django_filters.ModelChoiceFilter(queryset=Pool.objects.all(), empty_label="All pools")
    host = django_filters.ModelChoiceFilter(queryset=Host.objects.select_related("pool"), empty_label="All hosts")
    power_state = django_filters.ChoiceFilter(choices=PowerState.choices, empty_label="Any power state")
    tag = django_filters.CharFilter(method="with_tag", label="Tag")
    os = django_filters.ChoiceFilter(choices=OsFamily.choices, method="with_os", label="OS", empty_label="Any OS")
    presence = django_filters.ChoiceFilter(
        choices=(("present", "In the pool"), ("removed", "Removed from the pool")),
        method="with_presence", label="Presence", empty_label="In the pool or removed")
    ordering = django_filters.OrderingFilter(
        fields=(("name", "name"), ("power_state", "power_state"), ("pool__name", "pool"), ("host__name", "host"),
                ("os_name", "os"), ("memory", "memory"), ("vcpus", "vcpus")),
    )

    class Meta:
        model = VM
        fields = ["q", "pool", "host", "power_state", "tag", "os", "presence"]

    def search(self, queryset, name, value):
        value = value.strip()
        return queryset.filter(Q(name__icontains=value) | Q(uuid__istartswith=value))

    def with_tag(self, queryset, name, value):
        return queryset.filter(VM.tagged(value.strip()))

    def with_os(self, queryset, name, value):
        return queryset.filter(is_windows=(value == OsFamily.WINDOWS))

    def with_presence(self, queryset, name, value):
        # A VM deleted on its pool stays listed as removed, so its backups remain findable.
        return queryset.filter(removed_at__isnull=(value == "present"))


class HostFilterSet(django_filters.FilterSet):
    class Meta:
        model = Host
        fields = ["pool", "enabled", "live", "is_master"]


class StorageRepositoryFilterSet(django_filters.FilterSet):
    class Meta:
        model = StorageRepository
        fields = ["pool", "type", "shared"]


class NetworkFilterSet(django_filters.FilterSet):
    class Meta:
        model = Network
        fields = ["pool", "bridge"]
