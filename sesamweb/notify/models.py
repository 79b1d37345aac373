"""Notifications: events that happened, channels that carry messages, rules that connect
them, and the outbox of deliveries (one row per event and channel) that workers send."""
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from sesamweb.secrets import decrypt_secret, encrypt_secret

from .choices import ChannelKind, DeliveryStatus, EventName, Severity


class Event(models.Model):
    """Something that happened: `objects` names what it concerns (pool, host, job, store,
    VMs: each {"name", "url", ...}); `object_keys` ("job:12", "pool:3") let rules filter
    on objects without notify knowing their models."""

    created = models.DateTimeField(default=timezone.now, db_index=True)
    name = models.CharField(max_length=40, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    title = models.CharField(max_length=300)
    about = models.JSONField(default=dict, blank=True, help_text="The objects it concerns (emit's objects=)")
    object_keys = models.JSONField(default=list, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["name", "-created"], name="notify_event_name_recent")]

    def __str__(self):
        return self.title

    @property
    def severity_badge(self):
        return Severity.badge(self.severity)

    @property
    def name_label(self):
        try:
            return EventName(self.name).label
        except ValueError:
            return self.name


class Channel(models.Model):
    """Where messages go. `config` holds the kind's non-secret settings (see forms.py for
    each kind's fields); `secret` the encrypted password / token / signing key, never shown."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=ChannelKind.choices)
    enabled = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True)
    secret_encrypted = models.TextField(blank=True)
    fallback = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                 help_text="Messages that this channel cannot deliver go there instead")
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error_permanent = models.BooleanField(default=False)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_result = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = "notification channel"

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("notify:channel_update", args=[self.pk])

    def _secret_context(self):
        return f"notify-channel:{self.pk}"

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    def set_secret(self, plaintext: str):
        """Needs a primary key (the ciphertext is bound to this row)."""
        self.secret_encrypted = encrypt_secret(plaintext, self._secret_context()) if plaintext else ""

    def get_secret(self) -> str:
        return decrypt_secret(self.secret_encrypted, self._secret_context()) if self.secret_encrypted else ""

    @property
    def is_failing(self) -> bool:
        """Flagged on the dashboard: several deliveries in a row did not get through."""
        return self.enabled and self.consecutive_failures > 0 and (
            self.last_error_permanent or self.consecutive_failures >= settings.SESAM_NOTIFY_FAILING_AFTER)


class Rule(models.Model):
    """Which events go to which channels. A rule that names an object ("job:12") overrides
    the general rules for the events it lists when that object is concerned (its channels
    replace theirs; with no channels it silences them)."""

    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    event_names = models.JSONField(default=list, blank=True, help_text="Empty: every event")
    min_severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    object_key = models.CharField(max_length=100, blank=True,
                                  help_text='Only events about this object, e.g. "job:12"')
    channels = models.ManyToManyField(Channel, blank=True, related_name="rules")
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "pk"]
        verbose_name = "notification rule"

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("notify:rule_update", args=[self.pk])

    def covers(self, event_name: str) -> bool:
        return not self.event_names or event_name in self.event_names

    def accepts(self, event_name: str, severity: str) -> bool:
        return self.covers(event_name) and Severity.rank(severity) >= Severity.rank(self.min_severity)

    def quiet_until(self, moment: datetime) -> datetime | None:
        """The end of the quiet period `moment` falls in (console time zone), else None."""
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return None
        local = timezone.localtime(moment)
        now_t = local.time()
        start, end = self.quiet_start, self.quiet_end
        inside = (start <= now_t < end) if start < end else (now_t >= start or now_t < end)
        if not inside:
            return None
        until = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if until <= local:
            until += timedelta(days=1)
        return until


class Delivery(models.Model):
    """One message of one event to one channel: the outbox row a worker claims and sends."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    fallback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="fallbacks")
    is_test = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING,
                              db_index=True)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    held_for_quiet_hours = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    reached = models.JSONField(default=list, blank=True, help_text="Recipients already sent to")
    created = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notify_delivery_due")]

    def __str__(self):
        return f"{self.event.name_label} to {self.channel}"

    @property
    def status_badge(self):
        return DeliveryStatus.badge(self.status)

    @property
    def status_text(self):
        if self.status == DeliveryStatus.PENDING and self.held_for_quiet_hours and self.attempts == 0:
            return "Held (quiet hours)"
        if self.status == DeliveryStatus.PENDING and self.attempts:
            return "Retrying"
        return self.get_status_display()


class DeliveryAttempt(models.Model):
    """Every try of a delivery, with its outcome."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    worker = models.CharField(max_length=100, blank=True)
    started = models.DateTimeField(default=timezone.now)
    finished = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True)
    permanent = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]


class Condition(models.Model):
    """A lasting state (a data store unreachable or nearly full, a device server down) that
    is reported once when it begins and again only after it has ended: the watchdog checks
    every minute, the people hear once per crossing (conditions.py)."""

    key = models.CharField(max_length=200, unique=True)  # e.g. "store:3:nearly_full"
    active = models.BooleanField(default=False)
    since = models.DateTimeField(null=True, blank=True)  # when the current (or last) lapse began
    ended = models.DateTimeField(null=True, blank=True)
    detail = models.TextField(blank=True)

    def __str__(self):
        return f"{self.key} ({'active' if self.active else 'clear'})"
