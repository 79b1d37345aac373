"""Account changes (users, roles, passwords, tokens), each recorded in the audit log."""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event

from .models import AccountSettings, ApiToken
from .roles import Role, role_from_groups


def role_group(role: Role) -> Group:
    return Group.objects.get_or_create(name=Role(role).value)[0]


def user_snapshot(user) -> dict:
    role = role_from_groups(user)
    return {
        "username": user.get_username(),
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": user.is_active,
        "role": role.value if role else None,
    }


def _assign_role(user, role):
    user.groups.remove(*Group.objects.filter(name__in=[r.value for r in Role]))
    if role:
        user.groups.add(role_group(role))
    user.__dict__.pop("_sesam_role", None)


@transaction.atomic
def create_user(username, *, role, password, email="", first_name="", last_name="", must_change_password=True):
    user = get_user_model().objects.create_user(
        username=username, password=password, email=email, first_name=first_name, last_name=last_name
    )
    _assign_role(user, role)
    AccountSettings.objects.update_or_create(user=user, defaults={"must_change_password": must_change_password})
    record_event(AuditAction.CREATE, target=user, after=user_snapshot(user), message=f"User {username} created")
    return user


@transaction.atomic
def update_user(user, *, role=None, is_active=None, email=None, first_name=None, last_name=None):
    before = user_snapshot(user)
    for field, value in (("is_active", is_active), ("email", email), ("first_name", first_name), ("last_name", last_name)):
        if value is not None:
            setattr(user, field, value)
    user.save()
    if role is not None and not user.is_superuser:
        _assign_role(user, role)
    after = user_snapshot(user)
    if after != before:
        if before["is_active"] and not after["is_active"]:
            message = f"User {user.get_username()} deactivated"
            ApiToken.objects.filter(user=user).delete()  # a deactivated account keeps no API access
        else:
            message = f"User {user.get_username()} changed"
        record_event(AuditAction.UPDATE, target=user, before=before, after=after, message=message)
    return user


@transaction.atomic
def set_password(user, password, *, by_admin=False):
    user.set_password(password)
    user.save(update_fields=["password"])
    AccountSettings.objects.update_or_create(user=user, defaults={"must_change_password": by_admin})
    record_event(
        AuditAction.PASSWORD_CHANGE,
        target=user,
        message=f"Password of {user.get_username()} {'reset by an administrator' if by_admin else 'changed'}",
    )


def must_change_password(user) -> bool:
    return AccountSettings.objects.filter(user=user, must_change_password=True).exists()


@transaction.atomic
def issue_token(user, name) -> tuple[ApiToken, str]:
    token, key = ApiToken.issue(user, name)
    record_event(AuditAction.TOKEN_CREATE, target=token, target_repr=f"{user.get_username()}: {token}",
                 after={"name": name, "hint": token.hint}, message=f"API token {name!r} created")
    return token, key


@transaction.atomic
def revoke_token(token):
    record_event(AuditAction.TOKEN_REVOKE, target=token, target_repr=f"{token.user.get_username()}: {token}",
                 before={"name": token.name, "hint": token.hint}, message=f"API token {token.name!r} revoked")
    token.delete()
