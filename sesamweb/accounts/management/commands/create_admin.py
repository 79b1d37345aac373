import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sesamweb.accounts.roles import Role
from sesamweb.accounts.services import create_user, set_password
from sesamweb.audit.log import acting_as


class Command(BaseCommand):
    help = "Create an administrator with a one-time password (printed once; changed at first sign-in)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--if-missing", action="store_true",
                            help="Do nothing (exit 0) when the user already exists, for scripted set-ups.")
        parser.add_argument("--reset-password", action="store_true",
                            help="The user exists and lost the password: print a new one-time password.")

    def handle(self, *args, username, email, if_missing, reset_password, **options):
        existing = get_user_model().objects.filter(username__iexact=username).first()
        password = secrets.token_urlsafe(12)
        if existing and reset_password:
            with acting_as(None, source="cli"):
                set_password(existing, password, by_admin=True)
            self.stdout.write(f"New one-time password for {existing.get_username()}: {password}")
            self.stdout.write("It must be changed at the next sign-in.")
            return
        if existing:
            if if_missing:
                self.stdout.write(f"User {username} already exists; nothing to do.")
                return
            raise CommandError(f"A user named {username!r} already exists.")
        if reset_password:
            raise CommandError(f"There is no user named {username!r}; leave out --reset-password to create one.")
        with acting_as(None, source="cli"):
            create_user(username, role=Role.ADMINISTRATOR, password=password, email=email, must_change_password=True)
        self.stdout.write(f"Administrator {username} created.")
        self.stdout.write(f"One-time password: {password}")
        self.stdout.write("It must be changed at the first sign-in.")
