from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "sesamweb.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"

    def ready(self):
        from sesamweb.accounts.roles import VIEW
        from sesamweb.live.topics import register_topic

        register_topic("dashboard", VIEW)  # what changes the dashboard's figures
