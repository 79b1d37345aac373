"""Which VMs a job backs up, evaluated at each run (a new VM matching the rule is protected
without anyone touching the job)."""
import re

from django.db.models import Q

from xenpools.models import VM

from .choices import SelectionMode


def live_vms():
    """VMs present in their pool (not deleted, not snapshots)."""
    return VM.objects.filter(removed_at__isnull=True, is_snapshot=False)


def glob_to_regex(pattern: str) -> str:
    """A shell-style pattern (web-*, db-??) as an anchored regex both SQLite and PostgreSQL
    understand (fnmatch.translate's (?s:...)\\Z is Python's own)."""
    parts = []
    for char in pattern:
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    return "^" + "".join(parts) + "$"


def rule_filter(*, pools=(), tags=(), name_pattern="", power_states=()):
    """The rule as a Q on VM; empty parts match everything."""
    condition = Q()
    if pools:
        condition &= Q(pool__in=list(pools))
    if tags:
        any_tag = Q()
        for tag in tags:
            any_tag |= Q(tags_index__contains=f"|{tag}|")
        condition &= any_tag
    if name_pattern:
        condition &= Q(name__iregex=glob_to_regex(name_pattern))
    if power_states:
        condition &= Q(power_state__in=list(power_states))
    return condition


def select_vms(job):
    """The VMs the job would back up now, by name."""
    if job.selection == SelectionMode.EXPLICIT:
        chosen = live_vms().filter(pk__in=job.vms.values("pk"))
    else:
        chosen = live_vms().filter(rule_filter(
            pools=job.rule_pools.all(), tags=job.rule_tags, name_pattern=job.rule_name_pattern,
            power_states=job.rule_power_states))
    return chosen.exclude(pk__in=job.excluded_vms.values("pk")).select_related("pool").order_by("name", "pk")


def missing_explicit_vms(job):
    """Chosen VMs that no longer exist in their pool (reported on each run, never dropped silently)."""
    if job.selection != SelectionMode.EXPLICIT:
        return VM.objects.none()
    return job.vms.filter(removed_at__isnull=False)
