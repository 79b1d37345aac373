from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "sesamweb.audit"
    label = "audit"
    verbose_name = "Audit log"
