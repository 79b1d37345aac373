from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "sesamweb.live"
    label = "live"
    verbose_name = "Live updates"
