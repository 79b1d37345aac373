from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "sesamweb.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self):
        from . import checkpoints
        from .triggers import ensure_append_only_triggers, register_sqlite_function

        connection_created.connect(register_sqlite_function, dispatch_uid="audit_sqlite_function")
        post_migrate.connect(ensure_append_only_triggers, sender=self, dispatch_uid="audit_triggers")
        checkpoints.register_checkpoint_writer(checkpoints.write_to_data_directory)
        checkpoints.register_checkpoint_writer(checkpoints.send_to_syslog)
