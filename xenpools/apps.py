from django.apps import AppConfig


class XenpoolsConfig(AppConfig):
    name = "xenpools"
    verbose_name = "Pools"

    def ready(self):
        from sesamweb.accounts.roles import VIEW
        from sesamweb.live.topics import register_topic

        # Live updates of the inventory (xenpools/broadcast.py).
        register_topic("pools", VIEW)
        register_topic("pool", VIEW, keyed=True)
        register_topic("vms", VIEW)
