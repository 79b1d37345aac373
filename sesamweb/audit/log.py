"""Recording audit events: the one function every part of the console calls.

    record_event(AuditAction.UPDATE, target=pool, before=old, after=model_snapshot(pool))

Who acted and from where is taken, in this order, from the explicit `actor` / `source`
arguments, from an enclosing `acting_as(...)` block (management commands, workers), or from
the web request being served (set by AuditContextMiddleware). Appending is serialised so
the hash chain stays linear with several processes writing: SQLite transactions start
IMMEDIATE (write lock), PostgreSQL takes a transaction-level advisory lock.
"""
import json
import logging
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone

from sesamweb.client_address import client_address

from .choices import AuditOutcome
from .context import acting_request
from .checkpoints import after_event_committed
from .models import CHAIN_VERSION, GENESIS_HASH, AuditEvent
from .syslog import forward_to_syslog

logger = logging.getLogger(__name__)
# (user, source) set by acting_as() for code that runs outside a web request.
_acting_actor = ContextVar("acting_actor", default=None)
_CHAIN_LOCK_ID = 0x5E5A_A0D1  # any constant: the advisory lock guarding the chain's head
_SECRET_WORDS = ("password", "secret", "key", "token")
# Called with each recorded event after its transaction commits (e.g. notify's
# "configuration changed"), so the audit log needs to know nothing about who listens.
_listeners = []


def add_listener(callback) -> None:
    if callback not in _listeners:
        _listeners.append(callback)


@contextmanager
def acting_as(user=None, source: str = "cli") -> Iterator[None]:
    """Attribute the audit events recorded inside this block to `user` (None: the system)
    acting from `source` ("cli", "worker", "scheduler", ...)."""
    token = _acting_actor.set((user, source))
    try:
        yield
    finally:
        _acting_actor.reset(token)


def request_source(request) -> str:
    return client_address(request)


def _resolve_actor(actor, source):
    """The (user or username, source) behind the change being recorded."""
    scoped = _acting_actor.get()
    request = acting_request.get()
    if actor is None:
        if scoped is not None:
            actor = scoped[0]
        elif request is not None:
            actor = getattr(request, "user", None)
    if source is None:
        if scoped is not None:
            source = scoped[1]
        elif request is not None:
            source = request_source(request)
        else:
            source = "system"
    return actor, source


def _jsonable(value):
    """Round-trip through JSON so the stored value (and its hash) is exactly what we hash."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def model_snapshot(instance, *, exclude=("password",)) -> dict:
    """JSON-able field values of a model instance, secrets masked as "<set>" / "<unset>"."""
    snapshot = {}
    for field in instance._meta.concrete_fields:
        if field.name in exclude:
            continue
        value = field.value_from_object(instance)
        if any(word in field.name.lower() for word in _SECRET_WORDS) and not field.primary_key:
            value = "<set>" if value not in (None, "", b"") else "<unset>"
        elif isinstance(value, (bytes, memoryview)):
            value = f"<{len(value)} bytes>"
        snapshot[field.attname if field.is_relation else field.name] = value
    if instance.pk is not None:
        for field in instance._meta.many_to_many:
            if field.name not in exclude:
                snapshot[field.name] = sorted(str(pk) for pk in getattr(instance, field.name).values_list("pk", flat=True))
    return _jsonable(snapshot)


def _lock_chain_head():
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])
    # SQLite: the IMMEDIATE transaction already holds the database write lock.


def _after_commit(event):
    forward_to_syslog(event)
    try:
        after_event_committed(event)
    except Exception:  # the event is recorded; a missed checkpoint is only logged
        logger.exception("Could not write the audit checkpoint after event #%s", event.sequence)
    for callback in _listeners:
        try:
            callback(event)
        except Exception:  # noqa: BLE001 - a listener never undoes or fails the recorded change
            logger.exception("audit listener %r failed for event #%s", callback, event.sequence)


def record_event(
    action: str,
    *,
    target=None,
    target_type: str = "",
    target_id: str = "",
    target_repr: str = "",
    before: dict | None = None,
    after: dict | None = None,
    message: str = "",
    actor=None,
    source: str | None = None,
    outcome: str = AuditOutcome.SUCCESS,
) -> AuditEvent:
    """Append one event to the audit log and return it.

    target: a model instance (its type, id and str() are recorded) or None with the
    target_* strings given explicitly. actor: a user, a username string (e.g. the name tried
    in a failed sign-in) or None to use the acting context. before/after: plain JSON-able
    dicts; pass model_snapshot(...) for models so secrets are never recorded.
    """
    if target is not None:
        target_type = target_type or f"{target._meta.app_label}.{target._meta.model_name}"
        target_id = target_id or ("" if target.pk is None else str(target.pk))
        target_repr = target_repr or str(target)
    actor, source = _resolve_actor(actor, source)
    actor_user, actor_username = None, ""
    if isinstance(actor, str):
        actor_username = actor
    elif isinstance(actor, models.Model):
        actor_user, actor_username = actor, actor.get_username()
    # (an AnonymousUser or None stays empty: the system acted)

    with transaction.atomic():
        _lock_chain_head()
        head = AuditEvent.objects.order_by("-sequence").values("sequence", "hash").first()
        event = AuditEvent(
            sequence=(head["sequence"] + 1) if head else 1,
            prev_hash=head["hash"] if head else GENESIS_HASH,
            created=timezone.now(),
            actor=actor_user,
            actor_username=actor_username[:150],
            source=(source or "")[:100],
            action=str(action),
            target_type=str(target_type)[:100],
            target_id=str(target_id)[:100],
            target_repr=str(target_repr)[:255],
            before=_jsonable(before),
            after=_jsonable(after),
            message=message,
            outcome=str(outcome),
            chain_version=CHAIN_VERSION,
        )
        event.hash = event.compute_hash()
        event.save()
        transaction.on_commit(lambda: _after_commit(event))
    return event
