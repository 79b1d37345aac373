from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"

    def ready(self):
        # Protection columns, filters and bulk actions on the pool app's VM list.
        from xenpools.extensions import register_vm_list_extension

        from .jobs.vm_list import ProtectionColumns

        register_vm_list_extension(ProtectionColumns())
