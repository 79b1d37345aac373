"""WSGI entry point: plain HTTP through Django (no websockets; production serves
sesamweb.asgi). In-process tools that speak WSGI use it, e.g. the API fuzzing test."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sesamweb.settings")
application = get_wsgi_application()
