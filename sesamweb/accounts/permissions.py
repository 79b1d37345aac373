"""Role checks for views, the REST API and websockets: one place, used by all three."""
from django.contrib.auth.mixins import AccessMixin
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .roles import MANAGE, OPERATE, VIEW, user_can
from .services import must_change_password


class RolePermission(BasePermission):
    """DRF default: reading needs VIEW; writing needs the view's `write_capability`
    (MANAGE unless the view says OPERATE). A user who must change their password (a new
    account, or one an administrator reset) gets nothing, as on the pages, so the initial
    password cannot mint a permanent token."""

    def has_permission(self, request, view):
        if request.user.is_authenticated and must_change_password(request.user):
            raise PermissionDenied("You must change your password on the console before using the API.")
        if request.method in SAFE_METHODS:
            return user_can(request.user, getattr(view, "read_capability", VIEW))
        return user_can(request.user, getattr(view, "write_capability", MANAGE))


class CapabilityRequiredMixin(AccessMixin):
    """Class-based views: `capability = VIEW | OPERATE | MANAGE` (default VIEW).
    Anonymous users go to the sign-in page; signed-in users without the capability get 403."""

    capability = VIEW

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not user_can(request.user, self.capability):
            self.raise_exception = True
            return self.handle_no_permission()
        return super().dispatch(request, *args, **kwargs)


__all__ = ["RolePermission", "CapabilityRequiredMixin", "VIEW", "OPERATE", "MANAGE"]
