from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "sesamweb.notify"
    label = "notify"
    verbose_name = "Notifications"

    def ready(self):
        from sesamweb.audit.log import add_listener

        from .hooks import config_changed_from_audit
        add_listener(config_changed_from_audit)
