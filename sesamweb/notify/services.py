"""Changing notification settings: every change is audited (secrets masked) and goes
through here, from the pages, the API and the tests alike."""
from django.db import transaction

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import model_snapshot, record_event

from .models import Channel, Rule


def _rule_snapshot(rule):
    snapshot = model_snapshot(rule)
    snapshot["channels"] = sorted(rule.channels.values_list("name", flat=True)) if rule.pk else []
    return snapshot


@transaction.atomic
def save_channel(channel: Channel, *, secret: str | None = None, user=None) -> Channel:
    """Create or update `channel`; `secret` None keeps the stored one, "" clears it."""
    creating = channel.pk is None
    before = None if creating else model_snapshot(Channel.objects.get(pk=channel.pk))
    if creating:
        channel.save()
    if secret is not None:
        channel.set_secret(secret)
    channel.save()
    record_event(AuditAction.CREATE if creating else AuditAction.UPDATE, target=channel, actor=user,
                 before=before, after=model_snapshot(channel),
                 message=f"Notification channel {channel.name} ({channel.get_kind_display()}) "
                         f"{'added' if creating else 'changed'}")
    return channel


@transaction.atomic
def delete_channel(channel: Channel, *, user=None) -> None:
    before = model_snapshot(channel)
    record_event(AuditAction.DELETE, target=channel, actor=user, before=before,
                 message=f"Notification channel {channel.name} removed")
    channel.delete()


@transaction.atomic
def save_rule(rule: Rule, *, channels, user=None) -> Rule:
    creating = rule.pk is None
    before = None if creating else _rule_snapshot(Rule.objects.get(pk=rule.pk))
    rule.save()
    rule.channels.set(channels)
    record_event(AuditAction.CREATE if creating else AuditAction.UPDATE, target=rule, actor=user,
                 before=before, after=_rule_snapshot(rule),
                 message=f"Notification rule {rule.name} {'added' if creating else 'changed'}")
    return rule


@transaction.atomic
def delete_rule(rule: Rule, *, user=None) -> None:
    record_event(AuditAction.DELETE, target=rule, actor=user, before=_rule_snapshot(rule),
                 message=f"Notification rule {rule.name} removed")
    rule.delete()


def record_test(channel: Channel, delivery, *, user=None) -> None:
    from sesamweb.audit.choices import AuditOutcome

    ok = delivery.status == "sent"
    record_event(AuditAction.TEST_CONNECTION, target=channel, actor=user,
                 outcome=AuditOutcome.SUCCESS if ok else AuditOutcome.FAILURE,
                 message=f"Test message to notification channel {channel.name}: "
                         + ("delivered" if ok else f"failed: {delivery.last_error}"))
