from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm

from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.log import record_event, request_source

from .models import ApiToken
from .roles import Role
from .throttling import PASSWORD, clear_failures, current_lockout, record_failure


class SignInForm(AuthenticationForm):
    """Django's sign-in form, refusing early while this user name is slowed down at this address."""

    def clean(self):
        username = (self.cleaned_data.get("username") or "").strip()
        source = request_source(self.request) if self.request else ""
        lockout = current_lockout(PASSWORD, username, source)
        if lockout:
            record_event(AuditAction.LOGIN_LOCKED, actor=username, source=source, outcome=AuditOutcome.DENIED,
                         message=f"Sign-in refused: too many failures for {lockout.reason} "
                                 f"({lockout.seconds_left} s left)")
            raise forms.ValidationError(lockout.message, code="locked")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            record_failure(PASSWORD, username, source)  # the failed sign-in itself is audited by a signal
            raise
        clear_failures(PASSWORD, username, source)
        return cleaned


class RoleField(forms.ChoiceField):
    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "Administrator: everything. Operator: run backups and restores. "
                                       "Auditor: read-only, including the audit log.")
        super().__init__(choices=Role.choices, **kwargs)


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="Letters, digits and @ . + - _ only.")
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(required=False)
    # Least privilege first: an administrator raises it on purpose.
    role = RoleField(initial=Role.AUDITOR)
    password = forms.CharField(label="Initial password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                               help_text="At least 10 characters. Give it to the user over a separate channel.")
    must_change_password = forms.BooleanField(required=False, initial=True, label="Ask for a new password at first sign-in")

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user_model = get_user_model()
        user_model.username_validator(username)
        if user_model.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("A user with this name already exists.")
        return username

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password"):
            probe = get_user_model()(username=cleaned.get("username") or self.data.get("username", ""), email=cleaned.get("email", ""),
                                     first_name=cleaned.get("first_name", ""), last_name=cleaned.get("last_name", ""))
            try:
                password_validation.validate_password(cleaned["password"], probe)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class UserUpdateForm(forms.Form):
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(required=False)
    role = RoleField()
    is_active = forms.BooleanField(required=False, label="Active",
                                   help_text="Inactive users cannot sign in; their API tokens are revoked.")

    def __init__(self, *args, editing_self=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.editing_self = editing_self

    def clean(self):
        cleaned = super().clean()
        if self.editing_self:
            if not cleaned.get("is_active", True):
                self.add_error("is_active", "You cannot deactivate your own account.")
            if cleaned.get("role") and cleaned["role"] != Role.ADMINISTRATOR:
                self.add_error("role", "You cannot remove your own administrator role.")
        return cleaned


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. \"nightly report script\".")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if ApiToken.objects.filter(user=self.user, name=name).exists():
            raise forms.ValidationError("You already have a token with this name.")
        return name


class PasswordResetByAdminForm(forms.Form):
    new_password = forms.CharField(label="New password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                                   help_text="The user must choose their own password at the next sign-in.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_new_password(self):
        password = self.cleaned_data["new_password"]
        password_validation.validate_password(password, self.user)
        return password
