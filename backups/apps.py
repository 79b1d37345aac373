from django.apps import AppConfig
from django.db.models.signals import post_save, pre_save


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"

    def ready(self):
        from django_q.models import Schedule

        from .jobs.schedules import follow_store_cluster, keep_own_zone
        from .models import DataStore

        # django-q2 computes a cron row's next run in the console's zone; ours have their own.
        pre_save.connect(keep_own_zone, sender=Schedule, dispatch_uid="sesamweb-keep-own-zone")
        # A store served by another cluster gets a watchdog there (dead workers seen at once)
        # and its maintenance fires there.
        post_save.connect(follow_store_cluster, sender=DataStore, dispatch_uid="sesamweb-cluster-watchdog")
