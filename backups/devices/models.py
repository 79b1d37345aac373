"""Device servers, their one-time registration tokens and the secrets sealed for them."""
import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

__all__ = ["DeviceServer", "RegistrationToken", "DeviceSecret"]


def down_after():
    return timedelta(seconds=settings.SESAM_DEVICE_DOWN_AFTER_SECONDS)


class DeviceServer(models.Model):
    """A django-q2 cluster with its own name at a site; it runs the backups and maintenance of
    the data stores it owns (DataStore.device_server) and holds only their secrets."""

    name = models.SlugField(max_length=60, unique=True)
    site = models.CharField(max_length=100, blank=True)
    cluster_name = models.CharField(max_length=100, unique=True,
                                    help_text="django-q2 cluster (queue) name its workers listen on")
    address = models.CharField(max_length=200, blank=True, help_text="Host name or address it reported")
    version = models.CharField(max_length=40, blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    public_key = models.CharField(max_length=100, help_text="X25519 public key (base64) secrets are sealed for")
    max_streams = models.PositiveSmallIntegerField(default=4, help_text="VM backups it runs at once")
    registered_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    load = models.JSONField(default=dict, blank=True, help_text="What its last heartbeat reported")
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set when the console first saw it down (reported once per outage), cleared by a heartbeat.
    down_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("backups:device_server_detail", args=[self.pk])

    @property
    def is_revoked(self):
        return self.revoked_at is not None

    def heartbeat_age(self, now=None):
        if self.last_heartbeat is None:
            return None
        return ((now or timezone.now()) - self.last_heartbeat).total_seconds()

    @property
    def heartbeat_age_text(self):
        age = self.heartbeat_age()
        if age is None:
            return "never"
        if age < 120:
            return f"{max(age, 0):.0f} s ago"
        return f"{age // 60:.0f} min ago" if age < 7200 else f"{age // 3600:.0f} h ago"

    def is_up(self, now=None):
        age = self.heartbeat_age(now)
        return not self.is_revoked and age is not None and age < down_after().total_seconds()

    def went_down_at(self):
        """When it stopped answering: its last heartbeat plus the allowance (registration if none)."""
        return (self.last_heartbeat or self.registered_at) + down_after()

    @property
    def status_label(self):
        if self.is_revoked:
            return "revoked"
        return "up" if self.is_up() else "down"


class RegistrationToken(models.Model):
    """A one-time token an administrator creates in the console; only its hash is kept."""

    name = models.SlugField(max_length=60, help_text="The device server this token registers")
    site = models.CharField(max_length=100, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(DeviceServer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"registration token for {self.name}"

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(b"sesam-device-registration\0" + token.encode()).hexdigest()

    def state(self, now=None):
        if self.revoked_at:
            return "revoked"
        if self.used_at:
            return "used"
        if (now or timezone.now()) >= self.expires_at:
            return "expired"
        return "valid"


class DeviceSecret(models.Model):
    """One console secret sealed for one device server's public key. `context` is the secret's
    own context (e.g. "store-key:nas", "pool:3"); `source_digest` the hash of the console's
    encrypted copy it was made from, so a changed secret is sealed again."""

    server = models.ForeignKey(DeviceServer, on_delete=models.CASCADE, related_name="secrets")
    context = models.CharField(max_length=200)
    sealed = models.TextField()
    source_digest = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "context"], name="one_sealed_copy_per_server")]

    def __str__(self):
        return f"{self.context} for {self.server}"
