from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "sesamweb.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"
