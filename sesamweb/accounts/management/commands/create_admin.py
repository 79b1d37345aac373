import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sesamweb.accounts.roles import Role
from sesamweb.accounts.services import create_user
from sesamweb.audit.log import acting_as


class Command(BaseCommand):
    help = "Create an administrator with a one-time password (printed once; changed at first sign-in)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--if-missing", action="store_true",
                            help="Do nothing (exit 0) when the user already exists, for scripted set-ups.")

    def handle(self, *args, username, email, if_missing, **options):
        if get_user_model().objects.filter(username__iexact=username).exists():
            if if_missing:
                self.stdout.write(f"User {username} already exists; nothing to do.")
                return
            raise CommandError(f"A user named {username!r} already exists.")
        password = secrets.token_urlsafe(12)
        with acting_as(None, source="cli"):
            create_user(username, role=Role.ADMINISTRATOR, password=password, email=email, must_change_password=True)
        self.stdout.write(f"Administrator {username} created.")
        self.stdout.write(f"One-time password: {password}")
        self.stdout.write("It must be changed at the first sign-in.")
