"""Forms of the backup pages: add a data store, back up a VM now, store maintenance."""
from pathlib import Path

from django import forms
from django.utils.html import format_html

from .choices import BackupMethod, QuiesceFallback, RunStatus, StoreKind
from .jobs.models import TRANSFER_COMPRESSION
from .models import DataStore, StoreMaintenanceSchedule
from .repository.chunks import DEFAULT_COMPRESSION_LEVEL

MIN_PASSPHRASE_LENGTH = 12

METHOD_EXPLANATIONS = {
    BackupMethod.NORMAL: "Snapshot the running VM and export the snapshot; no downtime, crash-consistent.",
    BackupMethod.MEMORY: "Checkpoint disks and memory; restores to a suspended VM that resumes where it was.",
    BackupMethod.QUIESCED: "Ask the Windows guest (VSS) to flush before the snapshot; application-consistent.",
    BackupMethod.OFFLINE: "Shut the VM down cleanly first; fully consistent, costs a shutdown and a boot.",
}
METHOD_ORDER = [BackupMethod.NORMAL, BackupMethod.MEMORY, BackupMethod.QUIESCED, BackupMethod.OFFLINE]


def quiesce_support(vm):
    """(supported, reason) for VM.snapshot_with_quiesce, read from the inventory."""
    if not vm.is_windows:
        return False, "the guest is not Windows (VSS needs Windows guest tools)"
    version = _version_tuple(vm.pool.product_version)
    if version is None:
        return False, "the pool's XenServer version is unknown (sync the pool)"
    if version >= (8, 1):
        return False, f"XenServer {vm.pool.product_version} no longer has VSS snapshots (removed in 8.1)"
    return True, f"Windows guest on XenServer {vm.pool.product_version}"


def _version_tuple(text):
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except (AttributeError, ValueError):
        return None


class DataStoreForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="A short name, used by the CLI and the API (e.g. nas-01).")
    kind = forms.ChoiceField(choices=StoreKind.choices, initial=StoreKind.LOCAL, widget=forms.RadioSelect,
                             label="Medium")
    path = forms.CharField(max_length=500, required=False, label="Directory",
                           help_text="Absolute path. Its parent must exist: an unmounted share is refused, "
                                     "so backups never fill the root disk by mistake.")
    s3_endpoint = forms.URLField(required=False, label="S3 endpoint", assume_scheme="https",
                                 help_text="e.g. https://s3.eu-central-1.amazonaws.com or your MinIO address")
    s3_bucket = forms.CharField(max_length=200, required=False, label="Bucket")
    s3_prefix = forms.CharField(max_length=200, required=False, label="Prefix")
    s3_region = forms.CharField(max_length=50, required=False, label="Region")
    s3_access_key = forms.CharField(max_length=200, required=False, label="Access key")
    s3_secret = forms.CharField(required=False, label="Secret key", widget=forms.PasswordInput(render_value=False),
                                help_text="Stored encrypted; never shown again.")
    encrypted = forms.BooleanField(required=False, initial=True, label="Encrypt backups (AES-256-GCM)")
    passphrase = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False),
                                 help_text=f"At least {MIN_PASSPHRASE_LENGTH} characters; a few unrelated words "
                                           "are strong and easy to keep.")
    passphrase_confirm = forms.CharField(required=False, strip=False, label="Passphrase again",
                                         widget=forms.PasswordInput(render_value=False))
    compression_level = forms.IntegerField(
        min_value=1, max_value=19, initial=DEFAULT_COMPRESSION_LEVEL, label="zstd level",
        help_text="1 is the fastest; 3 saves about 2 % more space for a quarter more CPU; "
                  "higher levels cost much more CPU.")
    cluster = forms.CharField(max_length=100, required=False, label="Worker cluster",
                              help_text="Leave empty unless a remote device server writes to this store.")

    LOCAL_FIELDS = ("path",)
    S3_FIELDS = ("s3_endpoint", "s3_bucket", "s3_access_key", "s3_secret")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Only the chosen medium's fields are required (each section is shown for its medium).
        kind = self.data.get("kind", StoreKind.LOCAL) if self.is_bound else None
        for name in self.LOCAL_FIELDS:
            self.fields[name].required = kind in (None, StoreKind.LOCAL)
        for name in self.S3_FIELDS:
            self.fields[name].required = kind in (None, StoreKind.S3)
            self.fields[name].error_messages["required"] = "Required for an S3 data store."
        self.fields["path"].error_messages["required"] = "Enter the directory of the data store."
        encrypted = bool(self.data.get("encrypted")) if self.is_bound else True
        for name in ("passphrase", "passphrase_confirm"):
            self.fields[name].required = encrypted

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if DataStore.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError("A data store with this name exists already.")
        return name

    def clean_path(self):
        path = self.cleaned_data["path"].strip()
        if self.data.get("kind", StoreKind.LOCAL) != StoreKind.LOCAL:
            return path
        directory = Path(path)
        if not directory.is_absolute():
            raise forms.ValidationError("Enter an absolute path (starting with /).")
        if not directory.parent.is_dir():
            raise forms.ValidationError(f"{directory.parent} does not exist. Is the share mounted?")
        if directory.exists() and any(directory.iterdir()):
            raise forms.ValidationError(f"{directory} is not empty; choose a new or empty directory.")
        if DataStore.objects.filter(path=str(directory)).exists():
            raise forms.ValidationError("Another data store uses this directory.")
        return str(directory)

    def clean(self):
        data = super().clean()
        if data.get("encrypted"):
            passphrase = data.get("passphrase", "")
            # Both problems at once: fixing one should not reveal the other on the next submit.
            if len(passphrase) < MIN_PASSPHRASE_LENGTH:
                self.add_error("passphrase", f"Use at least {MIN_PASSPHRASE_LENGTH} characters.")
            if passphrase != data.get("passphrase_confirm"):
                self.add_error("passphrase_confirm", "The two passphrases differ.")
        return data

    def store_options(self):
        """Keyword arguments for backups.stores.create_store."""
        data = self.cleaned_data
        options = {"name": data["name"], "kind": data["kind"], "encrypted": data["encrypted"],
                   "compression_level": data["compression_level"], "cluster": data["cluster"].strip()}
        if data["encrypted"]:
            options["passphrase"] = data["passphrase"]
        if data["kind"] == StoreKind.LOCAL:
            options["path"] = data["path"]
        else:
            options.update({name: data[name] for name in
                            ("s3_endpoint", "s3_bucket", "s3_prefix", "s3_region", "s3_access_key", "s3_secret")})
        return options


class BackupNowForm(forms.Form):
    store = forms.ModelChoiceField(queryset=DataStore.objects.all(), empty_label=None, label="Data store")
    method = forms.ChoiceField(choices=[], widget=forms.RadioSelect(attrs={"class": "method-choice"}), initial=BackupMethod.NORMAL)
    incremental = forms.BooleanField(required=False, initial=True, label="Incremental",
                                     help_text="Read only the blocks changed since the last backup when a chain "
                                               "exists (falls back to full, with a note, when it does not).")
    restart_after_snapshot = forms.BooleanField(
        required=False, initial=True, label="Offline: start the VM again right after the snapshot",
        help_text="Downtime is the shutdown plus the boot, not the whole export.")
    allow_hard_shutdown = forms.BooleanField(
        required=False, label="Offline: force off if the clean shutdown times out")
    quiesce_fallback = forms.ChoiceField(choices=QuiesceFallback.choices, initial=QuiesceFallback.FAIL,
                                         label="Quiesced: when VSS is not possible")
    transfer_compression = forms.ChoiceField(
        choices=TRANSFER_COMPRESSION, initial="none", required=False, label="Compression on the host",
        help_text="The host compresses a full export before it is sent (zstd or gzip saves network bandwidth, "
                  "costs host CPU); as the job form's option and manage.py backup --transfer-compression.")

    def __init__(self, *args, vm, **kwargs):
        super().__init__(*args, **kwargs)
        self.vm = vm
        self.quiesce_supported, self.quiesce_reason = quiesce_support(vm)
        self.fields["method"].choices = [
            (method.value, format_html("<strong>{}</strong><span class=\"method-help\">{}</span>",
                                       method.label, METHOD_EXPLANATIONS[method]))
            for method in METHOD_ORDER
        ]

    def clean(self):
        data = super().clean()
        if (data.get("method") == BackupMethod.QUIESCED and not self.quiesce_supported
                and data.get("quiesce_fallback") != QuiesceFallback.NORMAL):
            self.add_error("method", f"A quiesced snapshot is not possible: {self.quiesce_reason}. "
                                     "Choose another method, or allow the fallback to a normal snapshot.")
        return data

    def backup_options(self):
        """Keyword arguments for backups.services.request_backup (besides vm, trigger, user)."""
        data = self.cleaned_data
        return {"store": data["store"], "method": data["method"], "incremental": data["incremental"],
                "restart_after_snapshot": data["restart_after_snapshot"],
                "allow_hard_shutdown": data["allow_hard_shutdown"], "quiesce_fallback": data["quiesce_fallback"],
                "transfer_compression": data["transfer_compression"] or "none"}


class DataStoreEditForm(forms.ModelForm):
    """What may change on an existing store: not its medium, location or key."""

    s3_secret = forms.CharField(required=False, label="Secret key", widget=forms.PasswordInput(render_value=False),
                                help_text="Leave empty to keep the current one.")

    class Meta:
        model = DataStore
        fields = ["name", "compression_level", "cluster", "max_parallel_streams", "s3_access_key"]
        labels = {"compression_level": "Compression level (zstd)", "cluster": "Worker cluster",
                  "max_parallel_streams": "Parallel streams", "s3_access_key": "Access key"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["compression_level"].validators.append(_between(1, 19))
        self.fields["max_parallel_streams"].validators.append(_between(1, 32))
        if self.instance.kind != StoreKind.S3:
            del self.fields["s3_access_key"], self.fields["s3_secret"]

    def changes(self):
        return {name: self.cleaned_data[name] for name in self.Meta.fields if name in self.fields}


def _between(low, high):
    from django.core.validators import MaxValueValidator, MinValueValidator

    def check(value):
        MinValueValidator(low)(value)
        MaxValueValidator(high)(value)
    return check


class PruneForm(forms.Form):
    keep_last = forms.IntegerField(min_value=0, initial=7, label="Keep last")
    keep_daily = forms.IntegerField(min_value=0, initial=7, label="Daily")
    keep_weekly = forms.IntegerField(min_value=0, initial=4, label="Weekly")
    keep_monthly = forms.IntegerField(min_value=0, initial=6, label="Monthly")
    confirm_last = forms.BooleanField(required=False, label="Also remove a VM's only good backup if the rules say so")

    def clean(self):
        data = super().clean()
        if not self.errors and not any(data.get(n) for n in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")):
            raise forms.ValidationError("Keep at least one restore point per VM by some rule.")
        return data

    def policy(self):
        from .repository import RetentionPolicy
        data = self.cleaned_data
        return RetentionPolicy(keep_last=data["keep_last"], keep_daily=data["keep_daily"],
                               keep_weekly=data["keep_weekly"], keep_monthly=data["keep_monthly"])


class KeyExportForm(forms.Form):
    """Exporting a data store's key hands out every backup in it: the administrator confirms
    with their own password (a session left open is not enough)."""

    current_password = forms.CharField(
        strip=False, label="Your password", widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Exporting the key gives access to every backup in this store; confirm that it is you.")
    passphrase = forms.CharField(
        required=False, strip=False, label="Protect the key file with a passphrase",
        widget=forms.PasswordInput(render_value=False),
        help_text="Without one, the file holds the raw key: keep it offline, like a password.")
    force = forms.BooleanField(required=False, label="Export again although the key was exported before")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_current_password(self):
        password = self.cleaned_data["current_password"]
        if self.user is None or not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password


class MaintenanceScheduleForm(forms.ModelForm):
    """A data store's scheduled verify / garbage collection / catalog refresh."""

    timezone = forms.ChoiceField(label="Time zone", initial="UTC")
    older_than_days = forms.IntegerField(
        min_value=0, required=False, initial=0, label="Only points not verified for (days)",
        help_text="Verify only: 0 verifies every restore point each time.")

    class Meta:
        model = StoreMaintenanceSchedule
        fields = ["action", "cron", "timezone", "enabled"]
        labels = {"action": "Task", "cron": "Cron expression", "enabled": "Enabled"}
        help_texts = {"cron": "Minute hour day-of-month month day-of-week; for example <code>0 3 * * 0</code> "
                              "is Sundays at 03:00."}

    def __init__(self, *args, **kwargs):
        from .jobs.schedules import time_zone_names

        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = [(name, name) for name in time_zone_names()]
        if self.instance.pk:
            self.fields["older_than_days"].initial = self.instance.verify_older_than_days

    def clean(self):
        from .jobs.schedules import ScheduleError, validate

        data = super().clean()
        if data.get("cron") and data.get("timezone"):
            try:
                data["cron"] = validate(data["cron"], data["timezone"])
            except ScheduleError as exc:
                self.add_error("cron", str(exc))
        return data


class HistoryFilterForm(forms.Form):
    """Filters of the task history (backups and restores together)."""

    kind = forms.ChoiceField(choices=[], required=False, label="Kind")
    status = forms.ChoiceField(choices=[("", "Any status"), *RunStatus.choices], required=False)
    vm = forms.CharField(required=False, max_length=100, label="VM name or UUID")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Until", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        from .history import KINDS

        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = KINDS

    def history_filter(self):
        from .history import HistoryFilter

        data = self.cleaned_data if self.is_valid() else {}
        return HistoryFilter(kind=data.get("kind") or "", status=data.get("status") or "",
                             vm=(data.get("vm") or "").strip(), since=data.get("since"), until=data.get("until"))
