from django.apps import AppConfig


class XenpoolsConfig(AppConfig):
    name = "xenpools"
    verbose_name = "Pools"
