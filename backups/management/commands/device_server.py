"""manage.py device_server token | register | run | list | revoke: remote device servers.

On the console: `device_server token NAME [--site SITE]` prints a one-time registration token
(administrators also create one on the Device servers page); `list`; `revoke NAME`.
On the device server's worker node: `device_server register --token TOKEN [--console URL] NAME`
once, then `device_server run NAME` (under systemd: deploy/systemd/sesam-device-server@.service).
Exit codes: 0 stopped, 2 refused (not registered, revoked, wrong key), 3 revoked while running."""
import signal
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from backups.devices.models import DeviceServer
from backups.devices.registration import RegistrationError, issue_token, revoke_server
from backups.devices.runner import DeviceServerRefused, Runner, register_with_console


class Command(BaseCommand):
    help = "Remote device servers: registration tokens, registering this node, running its cluster"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        token = sub.add_parser("token", help="create a one-time registration token (on the console)")
        token.add_argument("name")
        token.add_argument("--site", default="")
        token.add_argument("--hours", type=float, default=None, help="valid for (default SESAM_DEVICE_TOKEN_HOURS)")
        register = sub.add_parser("register", help="register this node with a token")
        register.add_argument("name")
        register.add_argument("--token", required=True)
        register.add_argument("--console", default=settings.SESAM_BASE_URL, help="the console's URL")
        register.add_argument("--address", default="", help="this node's address as the console should show it")
        run = sub.add_parser("run", help="run this device server's cluster and heartbeat")
        run.add_argument("name")
        run.add_argument("--heartbeat-seconds", type=float, default=None)
        sub.add_parser("list", help="device servers and their state")
        revoke = sub.add_parser("revoke", help="revoke a device server (on the console)")
        revoke.add_argument("name")

    def handle(self, *args, action, **options):
        getattr(self, f"handle_{action}")(**options)

    def handle_token(self, name, site, hours, **_):
        try:
            row, token = issue_token(name, site=site, hours=hours)
        except RegistrationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{token}\n")
        self.stderr.write(f"one-time token for device server {name}, valid until "
                          f"{timezone.localtime(row.expires_at):%Y-%m-%d %H:%M %Z}; it is not shown again\n")

    def handle_register(self, name, token, console, address, **_):
        try:
            answer = register_with_console(console, token, name, address=address)
        except DeviceServerRefused as exc:
            raise CommandError(str(exc), returncode=2) from None
        self.stdout.write(f"registered device server {answer['name']} (cluster {answer['cluster_name']}); "
                          f"start it with: manage.py device_server run {answer['name']}\n")

    def handle_run(self, name, heartbeat_seconds, **_):
        runner = Runner(name, heartbeat_seconds=heartbeat_seconds, out=self.stdout)
        signal.signal(signal.SIGTERM, runner.stop)
        signal.signal(signal.SIGINT, runner.stop)
        try:
            code = runner.run()
        except DeviceServerRefused as exc:
            raise CommandError(str(exc), returncode=2) from None
        if code:
            sys.exit(code)

    def handle_list(self, **_):
        for server in DeviceServer.objects.all():
            age = server.heartbeat_age()
            heard = f"heartbeat {age:.0f} s ago" if age is not None else "no heartbeat yet"
            self.stdout.write(f"{server.name}\t{server.status_label}\tsite {server.site or '-'}\t"
                              f"cluster {server.cluster_name}\t{heard}\tversion {server.version or '-'}\n")

    def handle_revoke(self, name, **_):
        server = DeviceServer.objects.filter(name=name).first()
        if server is None:
            raise CommandError(f"no device server named {name}")
        if not revoke_server(server):
            raise CommandError(f"device server {name} was revoked already")
        self.stdout.write(f"device server {name} revoked\n")
