"""The three roles of the console (design.md section 5) and how a user's role is read.

A role is a Django group with one of these names; superusers are administrators.
administrator: everything. operator: run backups and restores, no users / keys / pools.
auditor: read-only, including the audit log.
"""
from django.db import models


class Role(models.TextChoices):
    ADMINISTRATOR = "administrator", "Administrator"
    OPERATOR = "operator", "Operator"
    AUDITOR = "auditor", "Auditor"


# What each role may do; views and API permissions ask for one of these capabilities.
VIEW = "view"            # read pages and API
OPERATE = "operate"      # run / cancel backups, restores, syncs
MANAGE = "manage"        # pools, data stores, users, keys, settings
AUDIT = "audit"          # read the audit log (administrators and auditors, not operators)

CAPABILITIES = {
    Role.ADMINISTRATOR: {VIEW, OPERATE, MANAGE, AUDIT},
    Role.OPERATOR: {VIEW, OPERATE},
    Role.AUDITOR: {VIEW, AUDIT},
}


def user_role(user):
    """The user's role, or None for an anonymous user or one without a role."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    cached = getattr(user, "_sesam_role", False)
    if cached is not False:
        return cached
    role = role_from_groups(user)
    user._sesam_role = role  # one query per request, not per check
    return role


def role_from_groups(user):
    """The role as stored now (no cache; also for inactive users, e.g. in user management)."""
    if user.is_superuser:
        return Role.ADMINISTRATOR
    names = set(user.groups.values_list("name", flat=True))
    return next((r for r in (Role.ADMINISTRATOR, Role.OPERATOR, Role.AUDITOR) if r.value in names), None)


def user_can(user, capability):
    role = user_role(user)
    return role is not None and capability in CAPABILITIES[role]
