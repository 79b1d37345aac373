"""The simulated pool: configuration, database, disks, one HTTP server per host, NBD
servers, persistence, and the pool-level events (master change, host failure, HA)."""

import ipaddress
import os
import random
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field

from . import cbt
from . import inventory as inv
from .api import load_handlers
from .api.sessions import drop_all_sessions
from .db import Database
from .disks import DiskStore
from .faults import Faults
from .nbd_export import forget_leaked_vbds
from .transfer_log import TransferLog
from .product import Product

STATE_FILE = "state.json"
SAVE_INTERVAL = 2.0


@dataclass
class Config:
    listen_host: str = "127.0.0.1"
    port: int = 0
    data_dir: str = "."
    password: str = "demo"
    tls: bool = False
    product_version: str = "8.3.0"
    seed: int = 1
    session_timeout: float = 24 * 3600.0
    task_ttl: float = 3600.0
    nbd_port: int = 10809
    hosts: int = 2
    extra: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)   # operation kind -> seconds (timing.DEFAULTS)

    def host_address(self, index: int) -> str:
        """Host i listens on the listen address + i (127.0.0.1, .2, .3 ...)."""
        return str(ipaddress.ip_address(self.listen_host) + index)


class Simulator:
    def __init__(self, config: Config):
        load_handlers()
        self.config = config
        self.product = Product(config.product_version)
        self.db = Database()
        os.makedirs(config.data_dir, exist_ok=True)
        self.disks = DiskStore(os.path.join(config.data_dir, "disks"))
        self.faults = Faults()
        self.transfer_log = TransferLog()
        self.rng = random.Random(config.seed)
        self.session_seen: dict[str, float] = {}
        self.cancelled_tasks: set[str] = set()
        self.finished_tasks: dict[str, float] = {}  # task ref -> monotonic completion time
        self.servers: dict[str, object] = {}      # host ref -> HostServer
        self.nbd_servers: dict[str, object] = {}  # host ref -> NbdServer
        self._domid = 0
        self._stop = threading.Event()
        self._saver: threading.Thread | None = None
        self.certificates: dict[str, tuple] = {}  # host ref -> (ssl server context, PEM)

    # -- state ------------------------------------------------------------------------
    @property
    def state_path(self) -> str:
        return os.path.join(self.config.data_dir, STATE_FILE)

    def load_or_build(self, demo: bool = False, vms: int = 0, small: int = 0) -> None:
        from . import demo as demo_pool
        if os.path.exists(self.state_path):
            self.db.load(self.state_path)
            self.apply_product_version(self.config.product_version)
            with self.db.lock:
                cbt.reconcile(self)
                forget_leaked_vbds(self)
            return
        with self.db.lock:
            demo_pool.build_pool(self, self.config.hosts)
            if demo:
                demo_pool.add_demo_vms(self)
            if small:
                demo_pool.add_small_vms(self, small, prefix="test-vm")
            if vms:
                demo_pool.add_small_vms(self, vms)
            cbt.reconcile(self)
        self.save()

    def save(self) -> None:
        self.db.save(self.state_path)

    def _save_loop(self) -> None:
        while not self._stop.wait(SAVE_INTERVAL):
            self.forget_old_tasks()
            if self.db.dirty:
                try:
                    self.save()
                except OSError as e:
                    print("xapisim: cannot save state: %s" % e, flush=True)

    def forget_old_tasks(self) -> None:
        """xapi garbage-collects completed tasks; keep them for ``task_ttl`` seconds."""
        horizon = time.monotonic() - self.config.task_ttl
        with self.db.lock:
            for task, finished in list(self.finished_tasks.items()):
                if finished < horizon:
                    del self.finished_tasks[task]
                    if self.db.exists("task", task):
                        self.db.delete("task", task)

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        from .server import HostServer
        from .tls import load_or_create_certificate
        # Every host has its certificate (host.get_server_certificate, VDI.get_nbd_info),
        # used for https only with --tls.
        for host in self.hosts():
            address = self.db.get("host", host)["address"]
            self.certificates[host] = load_or_create_certificate(self.config.data_dir, address)
        for host in self.live_hosts():
            self.servers[host] = HostServer(self, host)
            self.servers[host].start()
        self.start_nbd()
        self._saver = threading.Thread(target=self._save_loop, name="xapisim-save", daemon=True)
        self._saver.start()

    def stop(self) -> None:
        self._stop.set()
        for server in list(self.servers.values()):
            server.stop()
        self.servers.clear()
        for nbd in list(self.nbd_servers.values()):
            nbd.stop()
        self.nbd_servers.clear()
        self.save()
        self.disks.close()

    @property
    def scheme(self) -> str:
        return "https" if self.config.tls else "http"

    def url_of(self, host: str) -> str:
        return "%s://%s:%d" % (self.scheme, self.db.get("host", host)["address"], self.config.port)

    # -- pool -------------------------------------------------------------------------
    def pool_ref(self) -> str:
        return next(iter(self.db.all("pool")))

    def master(self) -> str:
        return self.db.get("pool", self.pool_ref())["master"]

    def hosts(self) -> list[str]:
        return sorted(self.db.all("host"), key=lambda h: self.db.get("host", h)["address"])

    def live_hosts(self) -> list[str]:
        db = self.db
        return [h for h in self.hosts() if db.get("host_metrics", db.get("host", h)["metrics"])["live"]]

    def next_domid(self) -> int:
        self._domid += 1
        return self._domid

    def uuid4(self) -> uuidlib.UUID:
        return uuidlib.UUID(int=self.rng.getrandbits(128), version=4)

    def apply_product_version(self, version: str) -> None:
        self.product = Product(version)
        major, minor = self.product.api_version
        with self.db.lock:
            for host in self.hosts():
                rec = self.db.get("host", host)
                self.db.update("host", host, API_version_major=major, API_version_minor=minor,
                               software_version=self.product.software_version(rec["hostname"]))

    def move_master(self, host: str) -> None:
        """Planned master change (pool.designate_new_master): the old master answers
        HOST_IS_SLAVE; xapi restarts on both, so every session is gone."""
        with self.db.lock:
            if host not in self.live_hosts():
                from .errors import XapiError
                raise XapiError("HOST_OFFLINE", host)
            self.db.update("pool", self.pool_ref(), master=host)
            drop_all_sessions(self)

    def fail_host(self, host: str, deferred: list | None = None) -> dict:
        """The host dies: its listener closes (connections refused), its VMs stop; with HA
        the protected ones restart elsewhere; if it was the master another host takes over."""
        db = self.db
        with db.lock:
            db.update("host_metrics", db.get("host", host)["metrics"], live=False)
            db.update("host", host, enabled=False)
            survivors = self.live_hosts()
            restarted, stopped = [], []
            if host == self.master() and survivors:
                db.update("pool", self.pool_ref(), master=survivors[0])
                drop_all_sessions(self)
            ha = db.get("pool", self.pool_ref())["ha_enabled"]
            for vm in list(db.get("host", host)["resident_VMs"]):
                rec = db.get("VM", vm)
                if rec["is_control_domain"]:
                    continue
                protected = ha and rec["ha_restart_priority"] in ("restart", "best-effort")
                target = self._restart_target(vm, survivors) if protected else None
                inv.set_power_state(self, vm, "Halted")
                if target:
                    inv.set_power_state(self, vm, "Running", target)
                    restarted.append(vm)
                else:
                    stopped.append(vm)
        server = self.servers.pop(host, None)
        nbd = self.nbd_servers.pop(host, None)
        stops = [s.stop for s in (server, nbd) if s]
        if server:
            server.refuse_new_connections()
        if deferred is not None:
            deferred.extend(stops)  # the caller may be a request served by this very host
        else:
            for stop in stops:
                stop()
        return {"restarted": restarted, "stopped": stopped, "master": self.master()}

    def _restart_target(self, vm: str, survivors: list[str]) -> str | None:
        srs = inv.vm_disk_srs(self, vm)
        for host in survivors:
            if all(host in inv.hosts_seeing_sr(self, sr) for sr in srs):
                return host
        return None

    def recover_host(self, host: str) -> None:
        from .server import HostServer
        db = self.db
        with db.lock:
            db.update("host_metrics", db.get("host", host)["metrics"], live=True)
            db.update("host", host, enabled=True)
        if host not in self.servers:
            self.servers[host] = HostServer(self, host)
            self.servers[host].start()
        self.start_nbd()

    # -- NBD --------------------------------------------------------------------------
    def nbd_networks(self) -> list[str]:
        return [n for n, rec in self.db.all("network").items() if set(rec["purpose"]) & {"nbd", "insecure_nbd"}]

    def needs_nbd_tls(self) -> bool:
        return any("nbd" in self.db.get("network", n)["purpose"] for n in self.nbd_networks())

    def nbd_mode(self) -> str:
        purposes = set()
        for n in self.nbd_networks():
            purposes |= set(self.db.get("network", n)["purpose"]) & {"nbd", "insecure_nbd"}
        if purposes == {"nbd"}:
            return "tls"
        if purposes == {"insecure_nbd"}:
            return "insecure"
        return "refuse"

    def start_nbd(self) -> None:
        from .nbd_export import start_nbd_servers
        start_nbd_servers(self)

    def restart_nbd(self) -> None:
        """Network purposes changed: serve NBD in the mode they now ask for (or not at all)."""
        for nbd in list(self.nbd_servers.values()):
            nbd.stop()
        self.nbd_servers.clear()
        self.start_nbd()

    def nbd_info(self, session: str, vdi: str) -> list[dict]:
        from .nbd_export import nbd_info
        return nbd_info(self, session, vdi)
