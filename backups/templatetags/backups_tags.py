"""Figures of backups as people read them (MB/s, durations, ratios), and the VM page panel."""
from django import template
from django.urls import NoReverseMatch, reverse

from sesamweb.accounts.roles import MANAGE, OPERATE, user_can

from ..choices import RunStatus, VerifyState
from ..forms import BackupNowForm
from ..models import DataStore, RestorePoint, VmBackup, VmChangeTracking

register = template.Library()

STATUS_BADGES = {
    RunStatus.QUEUED: "muted", RunStatus.RUNNING: "info", RunStatus.SUCCESS: "ok",
    RunStatus.WARNING: "warn", RunStatus.FAILED: "danger", RunStatus.CANCELLED: "muted",
}
VERIFY_BADGES = {VerifyState.UNVERIFIED: "muted", VerifyState.OK: "ok", VerifyState.DAMAGED: "danger"}


@register.filter
def status_badge(status):
    return STATUS_BADGES.get(status, "muted")


@register.filter
def verify_badge(state):
    return VERIFY_BADGES.get(state, "muted")


@register.filter
def progress_tone(status):
    return {RunStatus.SUCCESS: "ok", RunStatus.WARNING: "ok", RunStatus.FAILED: "danger"}.get(status, "")


@register.filter
def megabytes_per_second(bytes_count, seconds):
    """'123.4 MB/s' (decimal megabytes, like the CLI and the benchmarks), or an em dash."""
    if not bytes_count or not seconds:
        return "—"
    return f"{bytes_count / seconds / 1e6:.1f} MB/s"


@register.filter
def duration(seconds):
    """'2 h 05 min', '3 min 07 s', '12.4 s'; an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def ratio(value):
    return f"{value:.2f}×" if value else "—"


@register.filter
def percent(fraction):
    return int(round((fraction or 0) * 100))


def restore_url(point):
    """The restore wizard for a point, or "" while the wizard is not installed."""
    try:
        return reverse("backups:restore") + f"?point={point.pk}"
    except NoReverseMatch:
        return ""


@register.inclusion_tag("backups/includes/vm_backups_panel.html", takes_context=True)
def vm_backups_panel(context, vm, form=None):
    """Back up now and the restore points, for the VM detail page."""
    user = context["request"].user
    points = list(RestorePoint.objects.filter(vm_uuid=vm.uuid).select_related("store")[:50])
    for point in points:
        point.restore_url = restore_url(point)
    can_operate = user_can(user, OPERATE) and vm.removed_at is None and not vm.is_snapshot
    return {
        "vm": vm,
        "request": context["request"],
        "csrf_token": context.get("csrf_token"),
        "can_operate": can_operate,
        "can_protect": user_can(user, OPERATE),
        "can_manage_stores": user_can(user, MANAGE),
        "has_stores": DataStore.objects.exists(),
        "form": form or (BackupNowForm(vm=vm) if can_operate else None),
        "points": points,
        "recent": VmBackup.objects.filter(vm_uuid=vm.uuid).select_related("store")[:5],
    }


@register.filter
def has_restore_points(vm):
    return RestorePoint.objects.filter(vm_uuid=vm.uuid).exists()


@register.filter
def hours_or_days(delta):
    """A timedelta as people say an RPO or an age: "25 h", "3 d", "40 min"."""
    if delta is None:
        return ""
    seconds = delta.total_seconds()
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


@register.inclusion_tag("backups/includes/vm_protection_panel.html", takes_context=True)
def vm_protection_panel(context, vm):
    """Protection status, covering jobs and the last good point, for the VM detail page."""
    from ..jobs.protection import vm_protection

    state = vm_protection(vm)
    last_point = None
    if state.last_good_at is not None:
        last_point = (RestorePoint.objects.filter(vm_uuid=vm.uuid, taken_at=state.last_good_at)
                      .exclude(verify_state=VerifyState.DAMAGED).select_related("store").first())
    tracking = VmChangeTracking.objects.filter(vm_uuid=vm.uuid).first()
    return {"vm": vm, "state": state, "last_point": last_point, "tracking": tracking, "request": context["request"]}


@register.filter
def cron_words(cron):
    """A cron expression in words ("At 03:00, only on Sunday")."""
    from ..jobs.schedules import describe

    return describe(cron)


@register.filter
def in_zone(moment, zone_name):
    """A time shown in a schedule's own zone: "2026-12-06 03:00 CET"."""
    from ..jobs.schedules import ScheduleError, zone

    if not moment:
        return ""
    try:
        return f"{moment.astimezone(zone(zone_name)):%Y-%m-%d %H:%M %Z}"
    except ScheduleError:
        return f"{moment:%Y-%m-%d %H:%M %Z}"
