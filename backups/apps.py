from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"

    def ready(self):
        from sesamweb.accounts.roles import VIEW
        from sesamweb.live.topics import register_topic

        # Live progress: every run, one backup run, one restore (engine/progress.py, restore/progress.py).
        register_topic("runs", VIEW)
        register_topic("run", VIEW, keyed=True)
        register_topic("restore", VIEW, keyed=True)
