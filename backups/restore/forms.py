"""Forms of the restore wizard, one per step.

The forms only parse what the administrator chose; whether the choice can work (free space,
name and UUID clashes, networks, memory) is decided by backups.restore.plan.validate_plan,
whose PlanProblem.field names are the field names used here (per-disk and per-VIF fields
are named "sr_<disk key>" and "network_<VIF device>").
"""
from django import forms
from sesamweb.units import size_text as filesizeformat

from xenpools.models import Host, Network, Pool, StorageRepository

from ..models import ReplicationPolicy, RestorePoint

IDENTITY_CHOICES = [
    ("new", "New identity: new UUIDs and MAC addresses"),
    ("keep", "Keep the original UUIDs and MAC addresses"),
]
START_CHOICES = [
    ("halted", "Halted (offline)"),
    ("running", "Started"),
    ("suspended", "Suspended, with the saved memory"),
    ("resume", "Resumed from the saved memory"),
]
MEMORY_START_MODES = {"suspended", "resume"}
LEFT_OUT = "none"   # value of the "no network: leave the interface out" choice ("" is "not chosen yet")


def disk_field_name(disk_key: str) -> str:
    return f"sr_{disk_key}"


def vif_field_name(device: str) -> str:
    return f"network_{device}"


class VmChoiceForm(forms.Form):
    """Step 1: the VM whose restore points to browse (by uuid: it may no longer exist)."""

    vm = forms.CharField(
        label="Virtual machine", max_length=36,
        error_messages={"required": "Choose the virtual machine to restore."},
    )

    def clean_vm(self):
        uuid = self.cleaned_data["vm"].strip()
        if not RestorePoint.objects.filter(vm_uuid=uuid).exists():
            raise forms.ValidationError(
                "There is no restore point of a VM with UUID %(uuid)s: back it up first, or search for another VM.",
                params={"uuid": uuid}, code="unknown_vm",
            )
        return uuid


class PointChoiceForm(forms.Form):
    """Step 2: one restore point of the chosen VM."""

    point = forms.ModelChoiceField(
        queryset=RestorePoint.objects.none(), label="Restore point", widget=forms.RadioSelect,
        error_messages={"required": "Choose the restore point to restore from.",
                        "invalid_choice": "That restore point is not one of this VM's."},
    )

    def __init__(self, *args, vm_uuid, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["point"].queryset = RestorePoint.objects.filter(vm_uuid=vm_uuid)


class SrChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, sr):
        return f"{sr.name} ({filesizeformat(sr.free_space)} free)"


class TargetForm(forms.Form):
    """Step 3: target pool, host, an SR per disk and a network per VIF.

    The per-disk and per-VIF fields depend on the restore point and the chosen pool; the
    pool field may name another pool than the one the choices were built for (the
    administrator changed it): the view then rebuilds the defaults for the new pool.
    """

    target_pool = forms.ModelChoiceField(
        queryset=Pool.objects.all(), label="Target pool", empty_label=None,
        help_text="Any registered pool: the original one or another.",
    )
    target_host = forms.ModelChoiceField(
        queryset=Host.objects.none(), label="Host", required=False, empty_label="Let the pool choose",
        help_text="Where the VM starts, if it is started. Leave it to the pool otherwise.",
    )

    def __init__(self, *args, pool: Pool, details, with_memory=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool = pool
        self.fields["target_host"].queryset = Host.objects.filter(pool=pool)
        srs = StorageRepository.objects.filter(pool=pool).exclude(content_type="iso")
        self.disk_fields, self.vif_fields = [], []
        for disk in details.disks:
            name = disk_field_name(disk.key)
            self.fields[name] = SrChoiceField(
                queryset=srs, label=f"Storage for {disk_label(disk)}", empty_label=None,
                error_messages={"required": "Choose the storage repository for this disk.",
                                "invalid_choice": "That storage repository is not in the target pool."},
            )
            if with_memory or not disk.is_memory:   # the memory image only counts when it is restored
                self.fields[name].widget.attrs["data-disk-size"] = disk.virtual_size
            self.disk_fields.append((disk, name))
        network_choices = [("", "Choose a network…")]
        network_choices += [(str(n.pk), _network_label(n)) for n in Network.objects.filter(pool=pool)]
        network_choices.append((LEFT_OUT, "No network: leave this interface out"))
        for vif in details.vifs:
            name = vif_field_name(vif.device)
            self.fields[name] = forms.ChoiceField(
                choices=network_choices,
                error_messages={"required": "No network of the target pool matches this interface: choose one, "
                                            "or leave the interface out."},
                label=f"Network for interface {vif.device} (was {vif.network_name or 'an unknown network'})",
            )
            self.vif_fields.append((vif, name))

    def pool_changed(self) -> bool:
        """True when the administrator picked another pool than the one the choices show."""
        return self.is_bound and str(self.data.get("target_pool", "")) != str(self.pool.pk)

    def selected_srs(self) -> dict:
        return {disk.key: self.cleaned_data[name] for disk, name in self.disk_fields}

    def selected_networks(self) -> dict:
        networks = {n.pk: n for n in Network.objects.filter(pool=self.pool)}
        return {vif.device: None if self.cleaned_data[name] == LEFT_OUT else networks.get(int(self.cleaned_data[name]))
                for vif, name in self.vif_fields}


class OptionsForm(forms.Form):
    """Step 4: identity, replacing the original, name and how the VM comes up."""

    identity = forms.ChoiceField(choices=IDENTITY_CHOICES, widget=forms.RadioSelect, label="Identity")
    replace_original = forms.BooleanField(
        required=False, label="Replace the original VM (it is destroyed and the restored VM takes its place)",
    )
    name = forms.CharField(max_length=255, label="Name of the restored VM")
    start_mode = forms.ChoiceField(choices=START_CHOICES, widget=forms.RadioSelect, label="After the restore")
    disconnect_vifs = forms.BooleanField(
        required=False, label="Leave the network interfaces disconnected",
        help_text="The VM comes up without network: no address conflict with the original while you check it.",
    )

    def clean_name(self):
        return self.cleaned_data["name"].strip()


def disk_label(disk) -> str:
    if disk.is_memory:
        return f"the memory image ({filesizeformat(disk.virtual_size)})"
    name = f" “{disk.name}”" if getattr(disk, "name", "") else ""
    return f"disk {disk.userdevice}{name} ({filesizeformat(disk.virtual_size)})"


def _network_label(network) -> str:
    return f"{network.name} ({network.bridge})" if network.bridge else network.name


class ReplicationPolicyForm(forms.ModelForm):
    """A replication policy: which VMs (chosen, or every VM backed up to a data store), to which
    pool and SR, with which networks, how many replicas kept."""

    vms = forms.ModelMultipleChoiceField(
        queryset=None, required=False, label="VMs",
        help_text="Their replicas are refreshed after each successful backup. Hold Ctrl to choose several.")
    network_lines = forms.CharField(
        required=False, label="Network mapping", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line: <code>source network = target network</code>. Unmapped networks keep their name.")

    class Meta:
        model = ReplicationPolicy
        fields = ["name", "enabled", "source_store", "target_pool", "target_sr", "suffix", "keep"]
        labels = {"source_store": "Every VM backed up to", "target_pool": "Target pool", "target_sr": "Target SR",
                  "suffix": "Replica name suffix", "keep": "Replicas kept per VM"}
        help_texts = {"keep": "The oldest replicas beyond this number are deleted once a new one is in place.",
                      "suffix": "Added after the VM's name, before the backup's date (mind the leading space)."}

    def __init__(self, *args, **kwargs):
        from xenpools.models import VM

        super().__init__(*args, **kwargs)
        self.fields["vms"].queryset = (VM.objects.filter(removed_at__isnull=True, is_snapshot=False)
                                       .select_related("pool").order_by("name"))
        self.fields["vms"].label_from_instance = lambda vm: f"{vm.name} ({vm.pool})"
        self.fields["source_store"].empty_label = "No data store (only the VMs chosen)"
        self.fields["target_sr"].queryset = StorageRepository.objects.select_related("pool").order_by("pool__name", "name")
        self.fields["target_sr"].label_from_instance = lambda sr: f"{sr.name} ({sr.pool})"
        self.fields["target_sr"].empty_label = "The target pool's default SR"
        self.fields["suffix"].strip = False          # " (replica)": the leading space is part of the name
        self.fields["keep"].min_value = 1
        self.fields["keep"].widget.attrs["min"] = 1
        if self.instance.pk:
            self.fields["vms"].initial = list(VM.objects.filter(uuid__in=self.instance.vm_uuids, is_snapshot=False)
                                              .values_list("pk", flat=True))
            self.fields["network_lines"].initial = "\n".join(f"{s} = {t}" for s, t in self.instance.network_map.items())

    def clean_keep(self):
        keep = self.cleaned_data["keep"]
        if keep is None or keep < 1:
            raise forms.ValidationError("Keep at least one replica per VM.")
        return keep

    def clean_network_lines(self):
        mapping = {}
        for number, line in enumerate((self.cleaned_data.get("network_lines") or "").splitlines(), 1):
            if not line.strip():
                continue
            source, sep, target = line.partition("=")
            if not sep or not source.strip() or not target.strip():
                raise forms.ValidationError(f"Line {number}: write source network = target network.")
            mapping[source.strip()] = target.strip()
        return mapping

    def clean(self):
        data = super().clean()
        if not data.get("vms") and not data.get("source_store") and not self.errors:
            raise forms.ValidationError("Choose the VMs to replicate, or a data store whose VMs are all replicated.")
        pool, sr = data.get("target_pool"), data.get("target_sr")
        if pool and sr and sr.pool_id != pool.pk:
            self.add_error("target_sr", f"{sr.name} belongs to pool {sr.pool}, not to {pool}.")
        return data

    def save(self, commit=True):
        policy = super().save(commit=False)
        policy.vm_uuids = [vm.uuid for vm in self.cleaned_data.get("vms") or []]
        policy.network_map = self.cleaned_data.get("network_lines") or {}
        return policy
