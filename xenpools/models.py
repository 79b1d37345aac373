"""A mirror of each pool's inventory, kept current by xenpools.inventory.

Objects are keyed by (pool, uuid). XenAPI refs are kept too because events name objects by
ref (a deleted object's event may carry no record). VMs and VDIs that vanish from the pool
are marked removed, never deleted, so their backups stay findable.
"""
import re

from django.db import models
from django.urls import reverse
from django.utils import timezone

from sesamweb.secrets import decrypt_secret, encrypt_secret

from .choices import DiskType, HaRestartPriority, PoolHealth, PowerState, Scheme, SyncState


class Pool(models.Model):
    name = models.CharField(max_length=100, unique=True)
    scheme = models.CharField(max_length=5, choices=Scheme.choices, default=Scheme.HTTPS)
    address = models.CharField(max_length=255, help_text="The address the administrator entered (host name or IP).")
    port = models.PositiveIntegerField(default=443)
    username = models.CharField(max_length=100, default="root")
    password_encrypted = models.TextField(blank=True, editable=False)
    # SHA-256 fingerprints of each host's TLS certificate, keyed by host address.
    fingerprints = models.JSONField(default=dict, blank=True)
    uuid = models.CharField(max_length=36, blank=True, db_index=True)
    pool_label = models.CharField(max_length=255, blank=True, help_text="The pool's own name on XenServer.")
    master_address = models.CharField(max_length=255, blank=True)
    member_addresses = models.JSONField(default=list, blank=True)
    health = models.CharField(max_length=20, choices=PoolHealth.choices, default=PoolHealth.UNKNOWN, db_index=True)
    last_error = models.TextField(blank=True)
    last_contact = models.DateTimeField(null=True, blank=True)
    last_sync = models.DateTimeField(null=True, blank=True)
    ha_enabled = models.BooleanField(default=False)
    product_brand = models.CharField(max_length=100, blank=True)
    product_version = models.CharField(max_length=50, blank=True)
    # Streams and limits (backups/streams.py): exports and NBD connections served by one host
    # at once, and snapshots taken in the pool at once (xapi itself queues neither).
    streams_per_host = models.PositiveSmallIntegerField(
        default=2, help_text="Backup streams (exports, NBD connections) one host serves at once")
    snapshots_at_once = models.PositiveSmallIntegerField(
        default=1, help_text="Snapshots the backups take in this pool at once; the others queue")
    created = models.DateTimeField(auto_now_add=True)
    # A sync asked for by a person runs on a worker (xenpools/sync.py): claimed with a conditional
    # UPDATE on sync_state, kept alive by sync_heartbeat; the page shows progress and outcome.
    sync_state = models.CharField(max_length=10, choices=SyncState.choices, default=SyncState.IDLE)
    sync_heartbeat = models.DateTimeField(null=True, blank=True)
    sync_progress = models.JSONField(default=dict, blank=True)
    sync_outcome = models.TextField(blank=True)
    sync_ok = models.BooleanField(null=True, blank=True)
    sync_finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("xenpools:pool", args=[self.pk])

    @property
    def url(self):
        """The master's base URL, e.g. https://10.0.0.5:443."""
        host = self.master_address or self.address
        return f"{self.scheme}://{'[' + host + ']' if ':' in host else host}:{self.port}"

    # --- credentials -------------------------------------------------------------------
    # The password is bound to the row's primary key, so a new pool is saved once before
    # its password is set (see set_password).
    def set_password(self, password: str) -> None:
        if self.pk is None:
            raise ValueError("save the pool before setting its password")
        self.password_encrypted = encrypt_secret(password, f"pool:{self.pk}")

    def get_password(self) -> str:
        return decrypt_secret(self.password_encrypted, f"pool:{self.pk}")

    # --- health --------------------------------------------------------------------------
    @property
    def is_healthy(self):
        return self.health == PoolHealth.HEALTHY

    @property
    def health_badge(self):
        return PoolHealth.badge(self.health)

    def mark_healthy(self):
        self.health, self.last_error, self.last_contact = PoolHealth.HEALTHY, "", timezone.now()
        self.save(update_fields=["health", "last_error", "last_contact"])

    def mark_unhealthy(self, error: Exception | str, health: str = PoolHealth.ERROR):
        self.health, self.last_error = health, str(error)
        self.save(update_fields=["health", "last_error"])

    def remember_master(self, address: str):
        if address != self.master_address:
            self.master_address = address
            if self.pk:
                self.save(update_fields=["master_address"])

    @property
    def candidate_addresses(self):
        """Master first, then the other hosts known from the last sync (for failover)."""
        seen, result = set(), []
        for address in [self.master_address or self.address, *self.member_addresses, self.address]:
            if address and address not in seen:
                seen.add(address)
                result.append(address)
        return result


class Host(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="hosts")
    uuid = models.CharField(max_length=36)
    ref = models.CharField(max_length=80)
    name = models.CharField(max_length=255)
    address = models.CharField(max_length=255, blank=True)
    enabled = models.BooleanField(default=True)
    live = models.BooleanField(default=True)
    is_master = models.BooleanField(default=False)
    memory_total = models.BigIntegerField(default=0)
    memory_free = models.BigIntegerField(default=0)
    product_version = models.CharField(max_length=50, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["pool", "uuid"], name="xenpools_host_unique_uuid")]

    def __str__(self):
        return self.name


class StorageRepository(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="srs")
    uuid = models.CharField(max_length=36)
    ref = models.CharField(max_length=80)
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=50, blank=True)
    content_type = models.CharField(max_length=50, blank=True)
    shared = models.BooleanField(default=False)
    physical_size = models.BigIntegerField(default=0)
    physical_utilisation = models.BigIntegerField(default=0)
    virtual_allocation = models.BigIntegerField(default=0)
    hosts = models.ManyToManyField(Host, blank=True, related_name="srs", help_text="Hosts with the SR attached (from its PBDs).")

    class Meta:
        ordering = ["name"]
        verbose_name = "storage repository"
        verbose_name_plural = "storage repositories"
        constraints = [models.UniqueConstraint(fields=["pool", "uuid"], name="xenpools_sr_unique_uuid")]

    def __str__(self):
        return self.name

    @property
    def free_space(self):
        return max(self.physical_size - self.physical_utilisation, 0)

    @property
    def usage_percent(self):
        return round(100 * self.physical_utilisation / self.physical_size) if self.physical_size else 0


class Network(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="networks")
    uuid = models.CharField(max_length=36)
    ref = models.CharField(max_length=80)
    name = models.CharField(max_length=255)
    bridge = models.CharField(max_length=100, blank=True)
    mtu = models.PositiveIntegerField(default=1500)
    purpose = models.JSONField(default=list, blank=True, help_text="XenAPI network purposes, e.g. nbd, insecure_nbd.")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["pool", "uuid"], name="xenpools_network_unique_uuid")]

    def __str__(self):
        return self.name


class VM(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="vms")
    uuid = models.CharField(max_length=36, db_index=True)
    ref = models.CharField(max_length=80)
    name = models.CharField(max_length=255, db_index=True)
    description = models.TextField(blank=True)
    power_state = models.CharField(max_length=20, choices=PowerState.choices, default=PowerState.HALTED, db_index=True)
    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="vms")
    os_name = models.CharField(max_length=255, blank=True)
    is_windows = models.BooleanField(default=False)
    tags = models.JSONField(default=list, blank=True)
    # "|tag1|tag2|": lets every database filter on one tag with a plain LIKE.
    tags_index = models.TextField(blank=True, editable=False)
    memory = models.BigIntegerField(default=0, help_text="memory_static_max in bytes")
    vcpus = models.PositiveIntegerField(default=1)
    is_snapshot = models.BooleanField(default=False, db_index=True)
    snapshot_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="snapshots")
    snapshot_time = models.DateTimeField(null=True, blank=True)
    ha_restart_priority = models.CharField(max_length=20, choices=HaRestartPriority.choices, blank=True)
    last_seen = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "virtual machine"
        constraints = [models.UniqueConstraint(fields=["pool", "uuid"], name="xenpools_vm_unique_uuid")]
        indexes = [models.Index(fields=["pool", "removed_at", "is_snapshot", "name"], name="xenpools_vm_list")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("xenpools:vm", args=[self.pk])

    @property
    def power_badge(self):
        return PowerState.badge(self.power_state)

    @staticmethod
    def index_tags(tags):
        return "|" + "|".join(tags) + "|" if tags else ""

    @staticmethod
    def tagged(tag):
        """Q for the VMs carrying the tag. Case-sensitive, as xapi's tags are, on every database:
        SQLite's LIKE (Django's `contains` there) ignores case; its REGEXP (Python's re) does not."""
        return models.Q(tags_index__regex=re.escape(f"|{tag}|"))


class VDI(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="vdis")
    uuid = models.CharField(max_length=36, db_index=True)
    ref = models.CharField(max_length=80)
    name = models.CharField(max_length=255, blank=True)
    sr = models.ForeignKey(StorageRepository, null=True, blank=True, on_delete=models.SET_NULL, related_name="vdis")
    virtual_size = models.BigIntegerField(default=0)
    physical_utilisation = models.BigIntegerField(default=0)
    type = models.CharField(max_length=30, blank=True)
    cbt_enabled = models.BooleanField(default=False)
    is_snapshot = models.BooleanField(default=False)
    snapshot_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="snapshots")
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "virtual disk image"
        constraints = [models.UniqueConstraint(fields=["pool", "uuid"], name="xenpools_vdi_unique_uuid")]

    def __str__(self):
        return self.name or self.uuid


class VirtualDisk(models.Model):
    """A VBD: how a VM sees a VDI (or an empty CD drive)."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="vbds")
    uuid = models.CharField(max_length=36)
    ref = models.CharField(max_length=80)
    vm = models.ForeignKey(VM, on_delete=models.CASCADE, related_name="disks")
    vdi = models.ForeignKey(VDI, null=True, blank=True, on_delete=models.SET_NULL, related_name="vbds")
    userdevice = models.CharField(max_length=10, blank=True)
    type = models.CharField(max_length=10, choices=DiskType.choices, default=DiskType.DISK)
    mode = models.CharField(max_length=2, default="RW")
    bootable = models.BooleanField(default=False)

    class Meta:
        ordering = ["userdevice"]
        verbose_name = "virtual block device"
        constraints = [models.UniqueConstraint(fields=["pool", "uuid"], name="xenpools_vbd_unique_uuid")]


class VIF(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="vifs")
    uuid = models.CharField(max_length=36)
    ref = models.CharField(max_length=80)
    vm = models.ForeignKey(VM, on_delete=models.CASCADE, related_name="vifs")
    network = models.ForeignKey(Network, null=True, blank=True, on_delete=models.SET_NULL, related_name="vifs")
    device = models.CharField(max_length=10, blank=True)
    mac = models.CharField(max_length=17, blank=True)
    mtu = models.PositiveIntegerField(default=1500)

    class Meta:
        ordering = ["device"]
        verbose_name = "virtual network interface"
        constraints = [models.UniqueConstraint(fields=["pool", "uuid"], name="xenpools_vif_unique_uuid")]
