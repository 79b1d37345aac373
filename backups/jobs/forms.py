"""Forms of the job pages: the job itself, its schedules, a retention policy to preview, and
protecting a restore point."""
import copy
import re

from django import forms
from django.utils.html import format_html

from xenpools.choices import PowerState
from xenpools.models import VM, Pool

from ..choices import BackupMethod
from ..forms import METHOD_EXPLANATIONS, METHOD_ORDER
from ..models import BackupJob, DataStore, JobSchedule
from . import schedules
from .choices import WEEKDAYS, ScheduleKind, SelectionMode
from .retention import JobRetention
from .selection import select_by

RETENTION_FIELDS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
                    "deleted_vm_keep_days")
# Shell patterns here know * and ? only; classes and braces would be matched literally.
UNSUPPORTED_PATTERN = re.compile(r"[\[\]{}]")


def _vm_choices():
    return VM.objects.filter(removed_at__isnull=True, is_snapshot=False).select_related("pool").order_by("name", "pk")


class VmChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, vm):
        return f"{vm.name} ({vm.pool.name})"


class TagsField(forms.CharField):
    """Tags typed as "nightly, prod": stored as a list."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, (list, tuple)) else value

    def to_python(self, value):
        return [tag.strip() for tag in (value or "").split(",") if tag.strip()]


class ExcludedDisksField(forms.MultipleChoiceField):
    """The disks of live VMs, labelled "VM: disk (position, size)"; stored as VDI UUIDs, so a
    disk keeps being left out wherever its VM moves."""

    def __init__(self, **kwargs):
        super().__init__(choices=self._choices, **kwargs)

    @staticmethod
    def _choices():
        from sesamweb.units import size_text as filesizeformat

        from xenpools.models import VirtualDisk

        disks = (VirtualDisk.objects.filter(type="Disk", vdi__isnull=False, vm__removed_at__isnull=True,
                                            vm__is_snapshot=False)
                 .select_related("vm", "vdi").order_by("vm__name", "userdevice"))
        return [(d.vdi.uuid, f"{d.vm.name}: {d.vdi.name or d.vdi.uuid} (position {d.userdevice}, "
                             f"{filesizeformat(d.vdi.virtual_size)})") for d in disks]

    def valid_value(self, value):
        # A disk deleted since it was excluded stays valid (it is simply never met again).
        return value in (self.initial or []) or super().valid_value(value)


class BackupJobForm(forms.ModelForm):
    """All of a job's settings, in the groups the page shows (What / How / Where / Retention)."""

    vms = VmChoiceField(queryset=_vm_choices(), required=False, label="Chosen VMs",
                        widget=forms.SelectMultiple(attrs={"size": 8}))
    rule_pools = forms.ModelMultipleChoiceField(queryset=Pool.objects.order_by("name"), required=False, label="Pools",
                                                widget=forms.CheckboxSelectMultiple,
                                                help_text="None chosen: every pool.")
    rule_tags = TagsField(required=False, label="Tags",
                          help_text="VMs carrying any of these tags, separated by commas (e.g. nightly, prod).")
    rule_power_states = forms.MultipleChoiceField(choices=PowerState.choices, required=False, label="Power states",
                                                  widget=forms.CheckboxSelectMultiple,
                                                  help_text="None chosen: any power state.")
    excluded_vms = VmChoiceField(queryset=_vm_choices(), required=False, label="Never back up these VMs",
                                 widget=forms.SelectMultiple(attrs={"size": 6}))
    excluded_disks = ExcludedDisksField(
        required=False, label="Never back up these disks", widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="For example scratch or swap disks. They are left out of every backup; a VM restored from "
                  "this job comes back without them.")
    full_on_weekdays = forms.TypedMultipleChoiceField(choices=WEEKDAYS, coerce=int, required=False,
                                                      widget=forms.CheckboxSelectMultiple,
                                                      label="Full backups on these weekdays")
    method = forms.ChoiceField(choices=[], widget=forms.RadioSelect(attrs={"class": "method-choice"}))

    FIELDSETS = (
        ("what", "What: which VMs", ("selection", "vms", "rule_pools", "rule_tags", "rule_name_pattern",
                                     "rule_power_states", "excluded_vms", "excluded_disks")),
        ("how", "How", ("method", "quiesce_fallback", "restart_after_snapshot", "allow_hard_shutdown",
                        "shutdown_timeout", "incremental", "full_every", "full_on_weekdays",
                        "transfer_compression")),
        ("where", "Where to, and limits", ("store", "max_parallel_vms", "window_minutes", "rpo_hours")),
        ("retention", "Retention", RETENTION_FIELDS),
    )

    class Meta:
        model = BackupJob
        fields = ["name", "description", "enabled", "selection", "vms", "rule_pools", "rule_tags",
                  "rule_name_pattern", "rule_power_states", "excluded_vms", "excluded_disks", "method",
                  "quiesce_fallback",
                  "restart_after_snapshot", "allow_hard_shutdown", "shutdown_timeout", "transfer_compression",
                  "incremental", "full_every", "full_on_weekdays", "store", "max_parallel_vms", "window_minutes",
                  "rpo_hours", *RETENTION_FIELDS]
        widgets = {"selection": forms.RadioSelect, "description": forms.Textarea(attrs={"rows": 2})}
        labels = {
            "rule_name_pattern": "Name pattern", "quiesce_fallback": "Quiesced: when VSS is not possible",
            "restart_after_snapshot": "Offline: start the VM again right after the snapshot",
            "allow_hard_shutdown": "Offline: force off if the clean shutdown times out",
            "shutdown_timeout": "Offline: clean shutdown timeout (seconds)",
            "transfer_compression": "Compression on the host", "full_every": "Full after N incrementals",
            "store": "Data store", "max_parallel_vms": "VMs backed up at once",
            "window_minutes": "Run window (minutes)", "rpo_hours": "RPO (hours)",
            "keep_last": "Keep last", "keep_hourly": "Hourly", "keep_daily": "Daily", "keep_weekly": "Weekly",
            "keep_monthly": "Monthly", "keep_yearly": "Yearly",
            "deleted_vm_keep_days": "Deleted VMs: keep the last point (days)",
        }
        help_texts = {"transfer_compression": "The host compresses the export before it is sent (zstd or gzip "
                                              "saves network bandwidth, costs host CPU)."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["method"].choices = [
            (method.value, format_html("<strong>{}</strong><span class=\"method-help\">{}</span>",
                                       method.label, METHOD_EXPLANATIONS[method]))
            for method in METHOD_ORDER
        ]
        self.fields["method"].initial = BackupMethod.NORMAL
        self.fields["store"].empty_label = None
        self.fields["store"].queryset = DataStore.objects.order_by("name")

    def fieldsets(self):
        """(key, legend, [bound fields]) per group, for the template."""
        return [(key, legend, [self[name] for name in names]) for key, legend, names in self.FIELDSETS]

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        clash = BackupJob.objects.filter(name__iexact=name).exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("A job with this name exists already.")
        return name

    def clean_rule_name_pattern(self):
        pattern = self.cleaned_data["rule_name_pattern"].strip()
        if UNSUPPORTED_PATTERN.search(pattern):
            raise forms.ValidationError("Use * (any characters) and ? (one character) only; "
                                        "[...] and {...} are not supported.")
        return pattern

    def clean_max_parallel_vms(self):
        value = self.cleaned_data["max_parallel_vms"]
        if value < 1:
            raise forms.ValidationError("At least one VM at a time.")
        return value

    def clean(self):
        data = super().clean()
        if data.get("selection") == SelectionMode.EXPLICIT and not data.get("vms") and "vms" not in self.errors:
            self.add_error("vms", "Choose at least one VM, or select VMs by a rule.")
        return data

    def selected_vms(self):
        """The VMs the form's (unsaved) selection picks now; call after is_valid()."""
        return selection_preview(self.cleaned_data)


def selection_preview(data):
    return select_by(
        selection=data.get("selection") or SelectionMode.RULE, vms=[vm.pk for vm in data.get("vms") or []],
        pools=list(data.get("rule_pools") or []), tags=data.get("rule_tags") or [],
        name_pattern=data.get("rule_name_pattern") or "", power_states=data.get("rule_power_states") or [],
        excluded=[vm.pk for vm in data.get("excluded_vms") or []])


SELECTION_FIELDS = ("selection", "vms", "rule_pools", "rule_tags", "rule_name_pattern", "rule_power_states",
                    "excluded_vms")


class SelectionPreviewForm(forms.Form):
    """Only the "What" fields of the job form, for the live preview (the rest may be half-typed)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in SELECTION_FIELDS:
            self.fields[name] = copy.deepcopy(BackupJobForm.base_fields[name])
        self.fields["selection"].required = False

    clean_rule_name_pattern = BackupJobForm.clean_rule_name_pattern

    def selected_vms(self):
        return selection_preview(self.cleaned_data)


class ScheduleForm(forms.ModelForm):
    """A schedule typed the simple way (daily / weekly / every N hours) or as raw cron."""

    DAILY, WEEKLY, HOURS, CRON = "daily", "weekly", "hours", "cron"
    MODES = [(DAILY, "Daily at"), (WEEKLY, "Weekly on"), (HOURS, "Every N hours"), (CRON, "Cron expression")]

    mode = forms.ChoiceField(choices=MODES, initial=DAILY, widget=forms.RadioSelect, label="Runs")
    at = forms.TimeField(required=False, label="At (HH:MM)", initial="22:00",
                         widget=forms.TimeInput(format="%H:%M", attrs={"type": "time"}))
    weekdays = forms.TypedMultipleChoiceField(choices=WEEKDAYS, coerce=int, required=False,
                                              widget=forms.CheckboxSelectMultiple, label="On")
    hours = forms.IntegerField(required=False, min_value=1, max_value=23, initial=4, label="Every (hours)")
    minute = forms.IntegerField(required=False, min_value=0, max_value=59, initial=0, label="At minute")
    cron = forms.CharField(required=False, max_length=100, label="Cron expression",
                           help_text="minute hour day-of-month month day-of-week, e.g. 30 1 * * 1-5")
    # A CharField (with a select): an unknown zone is refused with ScheduleError's own words.
    timezone = forms.CharField(initial="UTC", label="Time zone", widget=forms.Select)

    class Meta:
        model = JobSchedule
        fields = ["timezone", "kind", "enabled"]
        labels = {"kind": "Backups"}
        widgets = {"kind": forms.RadioSelect}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["timezone"].widget.choices = [(name, name) for name in schedules.time_zone_names()]
        self.fields["kind"].initial = ScheduleKind.AUTO
        if self.instance.pk and not self.is_bound:
            self.initial.update(recognise(self.instance.cron))

    def clean_timezone(self):
        name = self.cleaned_data["timezone"]
        try:
            schedules.zone(name)
        except schedules.ScheduleError as exc:
            raise forms.ValidationError(str(exc)) from None
        return name

    def clean(self):
        data = super().clean()
        mode = data.get("mode")
        try:
            if mode == self.CRON:
                data["cron"] = schedules.validate(data.get("cron") or "", "UTC")
            elif mode in (self.DAILY, self.WEEKLY):
                at = data.get("at")
                if at is None:
                    self.add_error("at", "Enter the time as HH:MM.")
                    return data
                if mode == self.DAILY:
                    data["cron"] = schedules.daily_at(at.hour, at.minute)
                else:
                    try:
                        data["cron"] = schedules.weekly_on(data.get("weekdays") or [], at.hour, at.minute)
                    except schedules.ScheduleError as exc:
                        self.add_error("weekdays", str(exc))
                        return data
            elif mode == self.HOURS:
                try:
                    data["cron"] = schedules.every_hours(data.get("hours") or 0, data.get("minute") or 0)
                except schedules.ScheduleError as exc:
                    self.add_error("hours", str(exc))
                    return data
        except schedules.ScheduleError as exc:
            self.add_error("cron", str(exc))
        return data

    def save(self, commit=True):
        self.instance.cron = self.cleaned_data["cron"]
        return super().save(commit=commit)


def recognise(cron):
    """The simple form an expression came from, so editing shows it the way it was made."""
    parts = cron.split()
    initial = {"mode": ScheduleForm.CRON, "cron": cron}
    if len(parts) != 5 or not parts[0].isdigit():
        return initial
    minute, hour, day, month, weekday = parts
    if day != "*" or month != "*":
        return initial
    if hour.isdigit() and weekday == "*":
        return {"mode": ScheduleForm.DAILY, "at": f"{int(hour):02d}:{int(minute):02d}"}
    if hour.isdigit() and re.fullmatch(r"[0-6](,[0-6])*", weekday):
        days = [schedules.WEEKDAY_CRON.index(d) for d in weekday.split(",")]
        return {"mode": ScheduleForm.WEEKLY, "at": f"{int(hour):02d}:{int(minute):02d}", "weekdays": days}
    every = re.fullmatch(r"(\*|\*/(\d+))", hour)
    if every and weekday == "*":
        return {"mode": ScheduleForm.HOURS, "hours": int(every.group(2) or 1), "minute": int(minute)}
    return initial


class RetentionForm(forms.ModelForm):
    """A retention policy to preview (GET) or save on the job (POST)."""

    class Meta:
        model = BackupJob
        fields = list(RETENTION_FIELDS)
        labels = {name: BackupJobForm.Meta.labels[name] for name in RETENTION_FIELDS}

    def retention(self):
        data = self.cleaned_data
        proposed = BackupJob(**{name: data[name] for name in RETENTION_FIELDS})
        return JobRetention.of(proposed)


class ProtectForm(forms.Form):
    note = forms.CharField(max_length=200, required=False, label="Why",
                           help_text="e.g. kept for the audit of March")
