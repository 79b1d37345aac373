from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "sesamweb.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self):
        from .triggers import ensure_append_only_triggers

        post_migrate.connect(ensure_append_only_triggers, sender=self, dispatch_uid="audit_triggers")
