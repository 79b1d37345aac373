"""`manage.py device_server run NAME` on a device server's worker node: a django-q2 cluster on
the device server's own cluster name (queue), and a heartbeat with its version and load.

The runner is a small supervisor: it checks that the device server is registered, not
revoked and holds the private key it registered with, starts `manage.py qcluster` with
Q_CLUSTER_NAME (django-q2 reads it at start-up) and SESAM_DEVICE_SERVER (its workers then
read only the secrets sealed for this server), and beats every SESAM_DEVICE_HEARTBEAT_SECONDS.
A revoked device server is refused at start and stopped at its next heartbeat."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections

from ..choices import RunStatus
from .models import DeviceServer
from .registration import heartbeat
from .sealing import create_key_file, key_file_path, load_private_key, public_key_of

REPO = Path(__file__).resolve().parents[2]
EXIT_REVOKED = 3
CAPABILITIES = ["backup", "restore", "verify", "prune", "gc"]


class DeviceServerRefused(RuntimeError):
    """The device server may not run: the message says why."""


def software_version() -> str:
    return settings.SPECTACULAR_SETTINGS.get("VERSION", "") if hasattr(settings, "SPECTACULAR_SETTINGS") else ""


def register_with_console(console_url: str, token: str, name: str, *, address: str = "", timeout: float = 30) -> dict:
    """Make this node's key pair (kept in SESAM_DEVICE_KEY_FILE) and register it with the
    console's API; returns the console's answer (name, site, cluster_name)."""
    public_key = create_key_file()
    body = json.dumps({"token": token, "name": name, "public_key": public_key,
                       "address": address or socket.getfqdn(), "version": software_version(),
                       "capabilities": CAPABILITIES}).encode()
    request = urllib.request.Request(console_url.rstrip("/") + "/api/device-servers/register/", data=body,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc).get("detail", "")
        except ValueError:
            detail = ""
        raise DeviceServerRefused(f"the console refused the registration ({exc.code}): {detail or exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DeviceServerRefused(f"cannot reach the console at {console_url}: {exc.reason}") from None


def check_may_run(name: str) -> DeviceServer:
    server = DeviceServer.objects.filter(name=name).first()
    if server is None:
        raise DeviceServerRefused(f"no device server named {name} is registered; run `manage.py device_server "
                                  "register --token TOKEN NAME` first")
    if server.is_revoked:
        raise DeviceServerRefused(f"device server {name} was revoked on {server.revoked_at:%Y-%m-%d %H:%M %Z}; "
                                  "it may not run")
    key = public_key_of(load_private_key())
    if key != server.public_key:
        raise DeviceServerRefused(f"the key in {key_file_path()} is not the one device server {name} registered with")
    return server


def current_load(server: DeviceServer) -> dict:
    from ..models import VmBackup

    load1, load5, load15 = os.getloadavg()
    return {"loadavg": [round(load1, 2), round(load5, 2), round(load15, 2)], "cpus": os.cpu_count(),
            "workers": settings.Q_CLUSTER.get("workers"),
            "running": VmBackup.objects.filter(store__device_server=server, status=RunStatus.RUNNING).count()}


def _stop_with_parent():
    """In the cluster's process: SIGTERM when the runner dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG
    except OSError:
        pass


class Runner:
    def __init__(self, name: str, *, heartbeat_seconds: float | None = None, out=sys.stdout):
        self.name = name
        self.interval = heartbeat_seconds or settings.SESAM_DEVICE_HEARTBEAT_SECONDS
        self.out = out
        self.stopping = threading.Event()
        self.child = None

    def cluster_environment(self, server: DeviceServer) -> dict:
        return {**os.environ, "Q_CLUSTER_NAME": server.cluster_name, "SESAM_DEVICE_SERVER": server.name,
                "SESAM_DEVICE_KEY_FILE": str(key_file_path())}

    def beat(self, server) -> bool:
        close_old_connections()
        return heartbeat(self.name, version=software_version(), load=current_load(server), address=socket.getfqdn())

    def run(self) -> int:
        server = check_may_run(self.name)
        self.beat(server)
        self.child = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "qcluster"], cwd=REPO,
                                      env=self.cluster_environment(server), start_new_session=True,
                                      preexec_fn=_stop_with_parent)
        self.out.write(f"device server {server.name}: cluster {server.cluster_name} started (pid {self.child.pid})\n")
        self.out.flush()
        try:
            while not self.stopping.wait(self.interval):
                if self.child.poll() is not None:
                    self.out.write(f"device server {server.name}: its cluster exited ({self.child.returncode})\n")
                    return self.child.returncode or 1
                if not self.beat(server):
                    self.out.write(f"device server {server.name} was revoked: stopping its cluster\n")
                    return EXIT_REVOKED
            return 0
        finally:
            self.stop_cluster()

    def stop(self, *_):
        self.stopping.set()

    def stop_cluster(self):
        if self.child is None or self.child.poll() is not None:
            return
        os.killpg(self.child.pid, signal.SIGTERM)
        try:
            self.child.wait(timeout=settings.SESAM_DEVICE_STOP_SECONDS)    # django-q2 lets running tasks finish
        except subprocess.TimeoutExpired:
            self.out.write(f"device server {self.name}: its cluster did not stop within "
                           f"{settings.SESAM_DEVICE_STOP_SECONDS:.0f} s; killed\n")
            os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait()
