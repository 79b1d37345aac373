from django import forms
from django.conf import settings

from ..models import DataStore


class RegistrationTokenForm(forms.Form):
    name = forms.SlugField(max_length=60, label="Device server name",
                           help_text="Letters, digits, - and _; the name the device server registers under")
    site = forms.CharField(max_length=100, required=False, help_text="Where it stands, e.g. Hamburg branch")
    hours = forms.FloatField(min_value=0.05, max_value=24 * 30, initial=lambda: settings.SESAM_DEVICE_TOKEN_HOURS,
                             label="Valid for (hours)")


class StoreAssignmentForm(forms.Form):
    store = forms.ModelChoiceField(queryset=DataStore.objects.all(), label="Data store",
                                   help_text="Its backups and maintenance then run only on this device server")

    def __init__(self, *args, server=None, **kwargs):
        super().__init__(*args, **kwargs)
        if server is not None:
            self.fields["store"].queryset = DataStore.objects.exclude(device_server=server)
