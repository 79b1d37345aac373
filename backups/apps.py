from django.apps import AppConfig
from django.db.models.signals import post_save, pre_save


def write_audit_checkpoint_to_stores(checkpoint):
    """A copy of the audit checkpoint in each local data store: a witness of the audit log's
    length kept with the backups, away from the database (sesamweb/audit/checkpoints.py)."""
    import logging
    from pathlib import Path

    from sesamweb.audit.checkpoints import FILENAME, write_checkpoint_file

    from .choices import StoreKind
    from .models import DataStore

    for path in DataStore.objects.filter(kind=StoreKind.LOCAL).exclude(path="").values_list("path", flat=True):
        try:
            if Path(path).is_dir():
                write_checkpoint_file(Path(path) / FILENAME, checkpoint)
        except OSError as error:  # one unwritable store must not cost the others their copy
            logging.getLogger(__name__).warning("No audit checkpoint in store %s: %s", path, error)


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"

    def ready(self):
        from sesamweb.audit.checkpoints import register_checkpoint_writer

        register_checkpoint_writer(write_audit_checkpoint_to_stores)

        # Protection columns, filters and bulk actions on the pool app's VM list.
        from xenpools.extensions import register_vm_list_extension

        from .jobs.vm_list import ProtectionColumns

        register_vm_list_extension(ProtectionColumns())

        from sesamweb.accounts.roles import VIEW
        from sesamweb.live.topics import register_topic

        # Live progress: every run, one backup run, one restore (engine/progress.py, restore/progress.py).
        register_topic("runs", VIEW)
        register_topic("run", VIEW, keyed=True)
        register_topic("restore", VIEW, keyed=True)
        register_topic("store", VIEW, keyed=True)     # a store's verify / gc (store_progress.py)

        from django_q.models import Schedule

        from .jobs.schedules import follow_store_cluster, keep_own_zone
        from .models import DataStore

        # django-q2 computes a cron row's next run in the console's zone; ours have their own.
        pre_save.connect(keep_own_zone, sender=Schedule, dispatch_uid="sesamweb-keep-own-zone")
        # A store served by another cluster gets a watchdog there (dead workers seen at once)
        # and its maintenance fires there.
        post_save.connect(follow_store_cluster, sender=DataStore, dispatch_uid="sesamweb-cluster-watchdog")

        from django.conf import settings

        if settings.SESAM_DEVICE_SERVER:
            # A device server's workers: secrets only from the copies sealed for its own key.
            from .devices.sealing import install_own_secrets

            install_own_secrets()
