"""Named values of notifications: event names, severities, channel kinds, delivery states."""
from django.db import models


class EventName(models.TextChoices):
    RUN_FAILED = "run.failed", "Backup run failed"
    RUN_WARNING = "run.warning", "Backup run finished with warnings"
    RUN_SUCCEEDED = "run.succeeded", "Backup run succeeded"
    RESTORE_FAILED = "restore.failed", "Restore failed"
    RESTORE_SUCCEEDED = "restore.succeeded", "Restore succeeded"
    VM_RPO_MISSED = "vm.rpo_missed", "VM missed its recovery point objective"
    VERIFY_DAMAGED = "verify.damaged", "Verify found damaged restore points"
    STORE_UNREACHABLE = "store.unreachable", "Data store unreachable"
    STORE_NEARLY_FULL = "store.nearly_full", "Data store nearly full"
    POOL_UNREACHABLE = "pool.unreachable", "Pool unreachable"
    DEVICE_SERVER_DOWN = "device_server.down", "Device server down"
    LOGIN_FAILURES = "login.failures", "Repeated sign-in failures"
    CONFIG_CHANGED = "config.changed", "Configuration changed"
    DIGEST_DAILY = "digest.daily", "Daily digest"
    TEST = "notify.test", "Test message"


class Severity(models.TextChoices):
    INFO = "info", "Information"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"

    @classmethod
    def rank(cls, value) -> int:
        return [cls.INFO, cls.WARNING, cls.ERROR, cls.CRITICAL].index(value)

    @classmethod
    def badge(cls, value) -> str:
        return {cls.INFO: "info", cls.WARNING: "warn", cls.ERROR: "danger", cls.CRITICAL: "danger"}.get(value, "muted")


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email (SMTP)"
    SMS_GATEWAY = "sms_gateway", "SMS through an HTTP gateway"
    SMS_EMAIL = "sms_email", "SMS through email-to-SMS addresses"
    WEBHOOK = "webhook", "Webhook (signed JSON POST)"
    SYSLOG = "syslog", "Syslog (RFC 5424)"


class SmtpSecurity(models.TextChoices):
    NONE = "none", "None (plain SMTP)"
    STARTTLS = "starttls", "STARTTLS"
    TLS = "tls", "TLS from the start (SMTPS)"


class SyslogProtocol(models.TextChoices):
    UDP = "udp", "UDP"
    TCP = "tcp", "TCP (octet counting)"
    TLS = "tls", "TLS (RFC 5425)"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"

    @classmethod
    def badge(cls, value) -> str:
        return {cls.PENDING: "muted", cls.SENDING: "running", cls.SENT: "ok", cls.FAILED: "danger"}.get(value, "muted")


# RFC 5424 facility names and numbers (section 6.2.1).
SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
    **{f"local{n}": 16 + n for n in range(8)},
}
