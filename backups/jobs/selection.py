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
            any_tag |= VM.tagged(tag)
        condition &= any_tag
    if name_pattern:
        condition &= Q(name__iregex=glob_to_regex(name_pattern))
    if power_states:
        condition &= Q(power_state__in=list(power_states))
    return condition


def select_vms(job):
    """The VMs the job would back up now, by name."""
    return select_by(
        selection=job.selection, vms=job.vms.values("pk"), pools=job.rule_pools.all(), tags=job.rule_tags,
        name_pattern=job.rule_name_pattern, power_states=job.rule_power_states, excluded=job.excluded_vms.values("pk"))


def select_by(*, selection, vms=(), pools=(), tags=(), name_pattern="", power_states=(), excluded=()):
    """The VMs a selection picks now, from plain values (a saved job, or a form not saved yet)."""
    if selection == SelectionMode.EXPLICIT:
        chosen = live_vms().filter(pk__in=vms)
    else:
        chosen = live_vms().filter(rule_filter(pools=pools, tags=tags, name_pattern=name_pattern,
                                               power_states=power_states))
    return chosen.exclude(pk__in=excluded).select_related("pool").order_by("name", "pk")


def missing_explicit_vms(job):
    """Chosen VMs that no longer exist in their pool (reported on each run, never dropped silently)."""
    if job.selection != SelectionMode.EXPLICIT:
        return VM.objects.none()
    return job.vms.filter(removed_at__isnull=False)


def selection_summary(job):
    """One line saying which VMs the job takes (shown in the list and on the job page)."""
    if job.selection == "explicit":
        names = [vm.name for vm in job.vms.all()]
        text = f"{len(names)} chosen VM{'s' if len(names) != 1 else ''}"
        return text + (": " + ", ".join(names[:3]) + (" …" if len(names) > 3 else "") if names else "")
    parts = []
    if job.rule_tags:
        parts.append("tagged " + " or ".join(job.rule_tags))
    if job.rule_name_pattern:
        parts.append(f"named {job.rule_name_pattern}")
    if job.rule_power_states:
        parts.append(" or ".join(state.lower() for state in job.rule_power_states))
    pools = [pool.name for pool in job.rule_pools.all()]
    parts.append("in " + ", ".join(pools) if pools else "in every pool")
    excluded = [vm.name for vm in job.excluded_vms.all()]
    if excluded:
        parts.append("except " + ", ".join(excluded[:3]) + (" …" if len(excluded) > 3 else ""))
    return "VMs " + ", ".join(parts)
