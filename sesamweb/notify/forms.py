"""Channel forms, one per kind (the kind's settings and its secret), and the rule form.
The API validates channel settings with the same forms."""
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email

from .choices import SYSLOG_FACILITIES, ChannelKind, EventName, Severity, SmtpSecurity, SyslogProtocol
from .models import Channel, Rule

KEEP_SECRET_HELP = "Leave empty to keep the stored one (it is never shown again)."


class RecipientsField(forms.CharField):
    """One recipient per line (or comma-separated)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def __init__(self, *, validator=None, **kwargs):
        self.item_validator = validator
        super().__init__(**kwargs)

    def to_python(self, value):
        if isinstance(value, list):
            value = "\n".join(value)
        items = [item.strip() for chunk in (value or "").splitlines() for item in chunk.split(",")]
        return [item for item in items if item]

    def validate(self, value):
        if self.required and not value:
            raise ValidationError("Enter at least one recipient.", code="required")
        for item in value:
            if self.item_validator:
                try:
                    self.item_validator(item)
                except ValidationError:
                    raise ValidationError(f"“{item}” is not a valid recipient.", code="invalid") from None

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value


class ChannelForm(forms.Form):
    """Common fields; subclasses add their kind's `config_fields` and maybe a secret."""

    kind = None
    config_fields: tuple = ()
    secret_field = None

    name = forms.CharField(max_length=100)
    enabled = forms.BooleanField(required=False, initial=True)
    fallback = forms.ModelChoiceField(queryset=Channel.objects.none(), required=False,
                                      help_text="Messages this channel cannot deliver go there instead.")

    def __init__(self, *args, instance: Channel | None = None, **kwargs):
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": instance.name, "enabled": instance.enabled,
                                 "fallback": instance.fallback_id, **instance.config}
        super().__init__(*args, **kwargs)
        others = Channel.objects.all()
        if instance is not None and instance.pk:
            others = others.exclude(pk=instance.pk)
        self.fields["fallback"].queryset = others
        if self.secret_field and instance is not None and instance.has_secret:
            field = self.fields[self.secret_field]
            field.required = False
            field.help_text = f"{field.help_text} {KEEP_SECRET_HELP}".strip()

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        clash = Channel.objects.filter(name=name)
        if self.instance is not None and self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise ValidationError("Another channel has this name.")
        return name

    def config(self) -> dict:
        return {field: self.cleaned_data.get(field) for field in self.config_fields}

    def secret(self) -> str | None:
        """The new secret, or None to keep the stored one."""
        if not self.secret_field:
            return None
        value = self.cleaned_data.get(self.secret_field) or ""
        return value if value or self.instance is None or not self.instance.pk else None

    def apply(self, channel: Channel) -> Channel:
        channel.kind = self.kind
        channel.name = self.cleaned_data["name"]
        channel.enabled = self.cleaned_data["enabled"]
        channel.fallback = self.cleaned_data.get("fallback")
        channel.config = self.config()
        return channel


def _secret_input():
    return forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})


class EmailChannelForm(ChannelForm):
    kind = ChannelKind.EMAIL
    config_fields = ("host", "port", "security", "username", "from_address", "recipients", "ca_pem")
    secret_field = "password"

    host = forms.CharField(max_length=255, label="SMTP server")
    port = forms.IntegerField(min_value=1, max_value=65535, initial=587)
    security = forms.ChoiceField(choices=SmtpSecurity.choices, initial=SmtpSecurity.STARTTLS)
    username = forms.CharField(max_length=255, required=False)
    password = forms.CharField(required=False, widget=_secret_input(), help_text="SMTP password, stored encrypted.")
    from_address = forms.EmailField(label="From address")
    recipients = RecipientsField(validator=validate_email, help_text="One address per line.")
    ca_pem = forms.CharField(required=False, label="CA certificate (PEM)", widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Only for a server whose certificate the system does not trust.")

    def __init__(self, *args, instance=None, **kwargs):
        if instance is None and "initial" not in kwargs:   # a new channel starts from the EMAIL_* settings
            kwargs["initial"] = {"host": settings.EMAIL_HOST, "port": settings.EMAIL_PORT,
                                 "username": settings.EMAIL_HOST_USER, "from_address": settings.DEFAULT_FROM_EMAIL,
                                 "security": SmtpSecurity.STARTTLS if settings.EMAIL_USE_TLS else SmtpSecurity.NONE}
        super().__init__(*args, instance=instance, **kwargs)


class SmsEmailChannelForm(EmailChannelForm):
    kind = ChannelKind.SMS_EMAIL
    recipients = RecipientsField(validator=validate_email,
                                 help_text="Email-to-SMS addresses of your provider, e.g. 5551234@sms.example.")


class SmsGatewayChannelForm(ChannelForm):
    kind = ChannelKind.SMS_GATEWAY
    config_fields = ("url", "method", "content_type", "body_template", "recipients", "token_header")
    secret_field = "token"

    url = forms.CharField(max_length=500, label="URL template",
                          help_text="Placeholders {to}, {message} and {token} are URL-encoded.")
    method = forms.ChoiceField(choices=[("POST", "POST"), ("GET", "GET")], initial="POST")
    content_type = forms.ChoiceField(choices=[("application/x-www-form-urlencoded", "Form (URL-encoded)"),
                                              ("application/json", "JSON")], required=False)
    body_template = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                    help_text='For POST, e.g. {"to": "{to}", "text": "{message}"}.')
    recipients = RecipientsField(help_text="Phone numbers, one per line.")
    token = forms.CharField(required=False, widget=_secret_input(), help_text="Gateway token, stored encrypted.")
    token_header = forms.CharField(max_length=100, required=False,
                                   help_text="Also send the token in this header (e.g. Authorization).")

    def clean_url(self):
        return _check_template_url(self.cleaned_data["url"])

    def clean_body_template(self):
        return _check_template(self.cleaned_data.get("body_template") or "")


class WebhookChannelForm(ChannelForm):
    kind = ChannelKind.WEBHOOK
    config_fields = ("url",)
    secret_field = "signing_key"

    url = forms.URLField(max_length=500, label="URL", assume_scheme="https")
    signing_key = forms.CharField(widget=_secret_input(), min_length=16, label="Signing key",
                                  help_text="Shared secret for the X-Sesam-Signature HMAC-SHA256 header; "
                                            "stored encrypted.")


class SyslogChannelForm(ChannelForm):
    kind = ChannelKind.SYSLOG
    config_fields = ("host", "port", "protocol", "facility", "app_name", "ca_pem", "verify_tls")

    host = forms.CharField(max_length=255)
    port = forms.IntegerField(min_value=1, max_value=65535, initial=514)
    protocol = forms.ChoiceField(choices=SyslogProtocol.choices, initial=SyslogProtocol.TCP)
    facility = forms.ChoiceField(choices=[(name, name) for name in SYSLOG_FACILITIES], initial="daemon")
    app_name = forms.CharField(max_length=48, initial="sesamweb", label="App name")
    ca_pem = forms.CharField(required=False, label="CA certificate (PEM)", widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="TLS only: the collector's CA when the system does not trust it.")
    verify_tls = forms.BooleanField(required=False, initial=True, label="Verify the collector's certificate")

    def clean_app_name(self):
        value = self.cleaned_data["app_name"]
        if not all(33 <= ord(ch) <= 126 for ch in value):
            raise ValidationError("Printable ASCII without spaces only (RFC 5424).")
        return value


def _check_template(template: str) -> str:
    try:
        template.format_map({"to": "", "message": "", "token": ""})
    except (KeyError, ValueError, IndexError) as exc:
        raise ValidationError(f"Unknown placeholder or brace in the template: {exc}. Use {{to}}, {{message}}, "
                              "{token}; double braces {{ }} for literal ones.") from None
    return template


def _check_template_url(url: str) -> str:
    _check_template(url)
    try:
        URLValidator(schemes=["http", "https"])(url.format_map({"to": "x", "message": "x", "token": "x"}))
    except ValidationError:
        raise ValidationError("Enter an http:// or https:// URL.") from None
    return url


CHANNEL_FORMS = {form.kind: form for form in (EmailChannelForm, SmsGatewayChannelForm, SmsEmailChannelForm,
                                              WebhookChannelForm, SyslogChannelForm)}


class RuleForm(forms.ModelForm):
    event_names = forms.MultipleChoiceField(
        choices=[(c.value, c.label) for c in EventName if c != EventName.TEST], required=False,
        widget=forms.CheckboxSelectMultiple, label="Events", help_text="None ticked: every event.")
    channels = forms.ModelMultipleChoiceField(queryset=Channel.objects.all(), required=False,
                                              widget=forms.CheckboxSelectMultiple,
                                              help_text="None with an object: silences those events for it.")

    class Meta:
        model = Rule
        fields = ["name", "enabled", "event_names", "min_severity", "object_key", "channels",
                  "quiet_start", "quiet_end"]
        labels = {"min_severity": "Minimum severity", "object_key": "Only for object",
                  "quiet_start": "Quiet hours from", "quiet_end": "Quiet hours until"}
        help_texts = {"object_key": 'A per-job override: "job:12" (the job\'s id). It replaces the general '
                                    "rules for the events it lists when that job runs.",
                      "quiet_end": "Deliveries are held until then, except critical ones (console time zone)."}
        widgets = {"quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
                   "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["min_severity"].choices = Severity.choices

    def clean_object_key(self):
        value = self.cleaned_data.get("object_key", "").strip()
        if value and (":" not in value or not all(value.split(":", 1))):
            raise ValidationError('Write it as kind:id, for example "job:12".')
        return value

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("quiet_start")) != bool(cleaned.get("quiet_end")):
            raise ValidationError("Give both ends of the quiet hours, or neither.")
        return cleaned
