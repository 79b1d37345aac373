"""Users created with an initial password must choose their own before using the console."""
from django.shortcuts import redirect
from django.urls import reverse

from .services import must_change_password


class ForcePasswordChangeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and request.session.get("must_change_password"):
            allowed = {reverse("accounts:password_change"), reverse("logout")}
            if request.path not in allowed and not request.path.startswith(("/static/", "/api/")):
                if must_change_password(user):
                    return redirect("accounts:password_change")
                request.session.pop("must_change_password", None)
        return self.get_response(request)
