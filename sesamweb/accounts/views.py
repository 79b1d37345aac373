from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import LoginView, LogoutView
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from .forms import ApiTokenForm, PasswordResetByAdminForm, SignInForm, UserCreateForm, UserUpdateForm
from .models import ApiToken
from .permissions import CapabilityRequiredMixin
from .roles import MANAGE, VIEW, Role, role_from_groups
from .services import create_user, issue_token, must_change_password, revoke_token, set_password, update_user


class SignInView(LoginView):
    form_class = SignInForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form):
        response = super().form_valid(form)
        if must_change_password(form.get_user()):
            self.request.session["must_change_password"] = True
            messages.info(self.request, "Welcome. Please choose your own password before you continue.")
            return redirect("accounts:password_change")
        return response


class SignOutView(LogoutView):
    http_method_names = ["post", "options"]


class MyAccountView(CapabilityRequiredMixin, View):
    capability = VIEW

    def get(self, request, token_form=None, new_key=None):
        return render(request, "accounts/my_account.html", {
            "tokens": ApiToken.objects.filter(user=request.user),
            "token_form": token_form or ApiTokenForm(user=request.user),
            "new_key": new_key,
        })

    def post(self, request):
        form = ApiTokenForm(request.POST, user=request.user)
        if not form.is_valid():
            return self.get(request, token_form=form)
        token, key = issue_token(request.user, form.cleaned_data["name"])
        messages.success(request, f"Token “{token.name}” created. Copy it now: it will not be shown again.")
        return self.get(request, new_key=key)


class TokenRevokeView(CapabilityRequiredMixin, View):
    capability = VIEW

    def post(self, request, pk):
        token = get_object_or_404(ApiToken, pk=pk, user=request.user)
        revoke_token(token)
        messages.success(request, f"Token “{token.name}” revoked.")
        return redirect("accounts:my_account")


class PasswordChangeView(LoginRequiredMixin, View):
    """Any signed-in user, even one without a role, may change their own password."""

    def get(self, request, form=None):
        forced = bool(request.session.get("must_change_password"))
        return render(request, "accounts/password_change.html", {"form": form or PasswordChangeForm(request.user), "forced": forced})

    def post(self, request):
        form = PasswordChangeForm(request.user, request.POST)
        if not form.is_valid():
            return self.get(request, form=form)
        set_password(request.user, form.cleaned_data["new_password1"])
        update_session_auth_hash(request, request.user)
        request.session.pop("must_change_password", None)
        messages.success(request, "Your password has been changed.")
        return redirect("dashboard")


class UserListView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def get(self, request):
        users = get_user_model().objects.order_by("username").prefetch_related("groups")
        page = Paginator(users, 50).get_page(request.GET.get("page"))
        rows = [(user, role_from_groups(user)) for user in page]
        return render(request, "accounts/user_list.html", {"page_obj": page, "rows": rows})


class UserCreateView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def get(self, request, form=None):
        return render(request, "accounts/user_form.html", {"form": form or UserCreateForm(), "creating": True})

    def post(self, request):
        form = UserCreateForm(request.POST)
        if not form.is_valid():
            return self.get(request, form=form)
        data = form.cleaned_data
        user = create_user(data["username"], role=Role(data["role"]), password=data["password"], email=data["email"],
                           first_name=data["first_name"], last_name=data["last_name"],
                           must_change_password=data["must_change_password"])
        messages.success(request, f"User {user.username} created as {Role(data['role']).label.lower()}.")
        return redirect("accounts:user_list")


class UserUpdateView(CapabilityRequiredMixin, View):
    capability = MANAGE

    def _user(self, pk):
        return get_object_or_404(get_user_model(), pk=pk)

    def get(self, request, pk, form=None, password_form=None):
        user = self._user(pk)
        role = role_from_groups(user)
        initial = {"first_name": user.first_name, "last_name": user.last_name, "email": user.email,
                   "role": role.value if role else "", "is_active": user.is_active}
        form = form or UserUpdateForm(initial=initial, editing_self=user == request.user)
        password_form = password_form or PasswordResetByAdminForm(user=user)
        return render(request, "accounts/user_form.html", {"form": form, "password_form": password_form,
                                                            "edited_user": user, "creating": False})

    def post(self, request, pk):
        user = self._user(pk)
        form = UserUpdateForm(request.POST, editing_self=user == request.user)
        if not form.is_valid():
            return self.get(request, pk, form=form)
        data = form.cleaned_data
        update_user(user, role=Role(data["role"]), is_active=data["is_active"], email=data["email"],
                    first_name=data["first_name"], last_name=data["last_name"])
        messages.success(request, f"User {user.username} updated.")
        return redirect("accounts:user_list")


class UserPasswordResetView(UserUpdateView):
    """An administrator sets a new password (e.g. a forgotten one); the user must change it."""

    def post(self, request, pk):
        user = self._user(pk)
        form = PasswordResetByAdminForm(request.POST, user=user)
        if not form.is_valid():
            return self.get(request, pk, password_form=form)
        set_password(user, form.cleaned_data["new_password"], by_admin=user != request.user)
        messages.success(request, f"New password set for {user.username}.")
        return redirect("accounts:user_update", pk=user.pk)
