from django import forms

from .connection import normalise_fingerprint, parse_address
from .models import Pool


class PoolConnectionForm(forms.Form):
    """Address and credentials of a pool, plus the certificate confirmation step (https)."""

    name = forms.CharField(max_length=100, help_text="How the console names this pool.")
    address = forms.CharField(
        max_length=255, label="Master address",
        help_text="Host name or IP of the pool master: host, host:port, https://host:port or http://host:port "
                  "(default https, port 443). A member's address works too: the console finds the master.")
    username = forms.CharField(max_length=100, initial="root")
    # Never sent back to the browser: between "Test connection" and "Add pool" the typed
    # password waits in the session, encrypted, behind the `draft` token (views.py).
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), strip=False)
    draft = forms.CharField(required=False, widget=forms.HiddenInput)
    fingerprint = forms.CharField(required=False, widget=forms.HiddenInput)
    trust_certificate = forms.BooleanField(
        required=False, label="I compared this fingerprint with the host's certificate and trust it")
    allow_insecure = forms.BooleanField(
        required=False, label="Connect over plain HTTP (insecure)",
        help_text="Only for an http:// address: the pool password, every API call and every backup then cross "
                  "the network unencrypted and unauthenticated. Use https unless the network is isolated.")

    def __init__(self, *args, pool: Pool | None = None, **kwargs):
        self.pool = pool
        super().__init__(*args, **kwargs)
        if self.data.get("draft"):       # the password typed one step earlier waits in the session
            self.fields["password"].required = False

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        others = Pool.objects.filter(name__iexact=name)
        if self.pool is not None:
            others = others.exclude(pk=self.pool.pk)
        if others.exists():
            raise forms.ValidationError("A pool with this name already exists.")
        return name

    def clean_address(self):
        try:
            parse_address(self.cleaned_data["address"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc).capitalize() + ".") from None
        return self.cleaned_data["address"].strip()

    def clean(self):
        data = super().clean()
        address = data.get("address")
        already_accepted = self.pool is not None and self.pool.scheme == "http"
        if address and parse_address(address).scheme == "http" and not data.get("allow_insecure") and not already_accepted:
            self.add_error("allow_insecure", "An http:// address is unencrypted: tick this box to connect anyway, "
                                             "or use https://.")
        return data

    def clean_fingerprint(self):
        value = self.cleaned_data["fingerprint"]
        if not value:
            return ""
        try:
            return normalise_fingerprint(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def confirmed_fingerprint(self):
        """The fingerprint the admin confirmed, or None (first contact)."""
        data = self.cleaned_data
        return data["fingerprint"] if data.get("trust_certificate") and data.get("fingerprint") else None


class PoolEditForm(PoolConnectionForm):
    """Change the name and credentials; the password may be left empty to keep it."""

    password = forms.CharField(widget=forms.PasswordInput, strip=False, required=False,
                               help_text="Leave empty to keep the current password.")

    def __init__(self, *args, pool: Pool, **kwargs):
        super().__init__(*args, pool=pool, **kwargs)
        self.fields["address"].disabled = True
        self.fields["address"].help_text = "To move to another pool, add it as a new pool."
