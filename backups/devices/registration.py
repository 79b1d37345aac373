"""Registering, revoking and hearing from device servers.

An administrator creates a one-time token in the console (shown once, kept as a hash,
expiring). On the worker node `manage.py device_server register --token T NAME` makes a
key pair and sends the token and the public key to the console's API; the console checks the
token (unused, unexpired, not revoked, for that name), marks it used in the same conditional
UPDATE and creates the DeviceServer. Revoking a device server drops the secrets sealed for
it, and its runner stops at the next heartbeat."""
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.log import model_snapshot, record_event

from ..notifications import device_server_up
from .models import DeviceSecret, DeviceServer, RegistrationToken
from .sealing import parse_public_key


class RegistrationError(ValueError):
    """The registration is refused; the message says why."""


def cluster_name_for(name: str) -> str:
    return f"device-{name}"


@transaction.atomic
def issue_token(name: str, *, site: str = "", user=None, hours: float | None = None, now=None):
    """(row, token): the token text is returned once and never stored."""
    now = now or timezone.now()
    if DeviceServer.objects.filter(name=name).exists():
        raise RegistrationError(f"a device server named {name} exists already")
    token = secrets.token_urlsafe(32)
    row = RegistrationToken.objects.create(
        name=name, site=site, token_hash=RegistrationToken.hash(token), created_by=user, created_at=now,
        expires_at=now + timedelta(hours=hours if hours is not None else settings.SESAM_DEVICE_TOKEN_HOURS))
    record_event(AuditAction.TOKEN_CREATE, target=row, actor=user,
                 message=f"registration token for device server {name} created, valid until {row.expires_at:%Y-%m-%d %H:%M %Z}")
    return row, token


@transaction.atomic
def revoke_token(row: RegistrationToken, *, user=None, now=None):
    if RegistrationToken.objects.filter(pk=row.pk, revoked_at=None, used_at=None).update(revoked_at=now or timezone.now()):
        record_event(AuditAction.TOKEN_REVOKE, target=row, actor=user, message=f"{row} revoked before use")
        return True
    return False


def register(*, token: str, name: str, public_key: str, address: str = "", version: str = "",
             capabilities=(), now=None) -> DeviceServer:
    """Create the device server a valid token was made for; RegistrationError otherwise (each
    refusal is audited, with the reason)."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            return _register(token, name, public_key, address, version, list(capabilities), now)
    except RegistrationError as exc:
        record_event(AuditAction.CREATE, target_type="backups.deviceserver", target_repr=name, actor=None,
                     source=f"device server registration from {address or 'an unknown address'}",
                     outcome=AuditOutcome.DENIED, message=f"registration of device server {name} refused: {exc}")
        raise


def _register(token, name, public_key, address, version, capabilities, now):
    row = RegistrationToken.objects.select_for_update().filter(token_hash=RegistrationToken.hash(token or "")).first()
    if row is None:
        raise RegistrationError("unknown registration token")
    state = row.state(now)
    if state != "valid":
        raise RegistrationError(f"the registration token is {state}")
    if row.name != name:
        raise RegistrationError(f"the token was made for device server {row.name}, not {name}")
    try:
        parse_public_key(public_key)
    except ValueError as exc:
        raise RegistrationError(str(exc)) from None
    if DeviceServer.objects.filter(name=name).exists():
        raise RegistrationError(f"a device server named {name} exists already")
    # Single use even when two registrations race: only one conditional UPDATE succeeds.
    if not RegistrationToken.objects.filter(pk=row.pk, used_at=None, revoked_at=None).update(used_at=now):
        raise RegistrationError("the registration token is used")
    server = DeviceServer.objects.create(
        name=name, site=row.site, cluster_name=cluster_name_for(name), public_key=public_key,
        address=address[:200], version=version[:40], capabilities=capabilities, registered_at=now)
    RegistrationToken.objects.filter(pk=row.pk).update(used_by=server)
    record_event(AuditAction.CREATE, target=server, actor=None,
                 source=f"device server registration from {address or 'an unknown address'}",
                 after=model_snapshot(server),
                 message=f"device server {name} registered with a token (cluster {server.cluster_name})")
    return server


@transaction.atomic
def revoke_server(server: DeviceServer, *, user=None, now=None) -> bool:
    """Refused from now on: no secrets, no tasks; its runner stops at its next heartbeat."""
    now = now or timezone.now()
    if not DeviceServer.objects.filter(pk=server.pk, revoked_at=None).update(revoked_at=now):
        return False
    dropped, _ = DeviceSecret.objects.filter(server=server).delete()
    record_event(AuditAction.UPDATE, target=server, actor=user,
                 message=f"device server {server.name} revoked; {dropped} sealed secret(s) dropped")
    return True


def heartbeat(name: str, *, version: str = "", load: dict | None = None, address: str = "", now=None) -> bool:
    """The runner's heartbeat; False when the device server is revoked (or gone)."""
    now = now or timezone.now()
    fields = {"last_heartbeat": now, "down_since": None, "load": load or {}}
    if version:
        fields["version"] = version[:40]
    if address:
        fields["address"] = address[:200]
    was_down = DeviceServer.objects.filter(name=name, revoked_at=None).exclude(down_since=None).exists()
    alive = bool(DeviceServer.objects.filter(name=name, revoked_at=None).update(**fields))
    if alive and was_down:
        device_server_up(name=name)        # its next outage is reported again
    return alive
