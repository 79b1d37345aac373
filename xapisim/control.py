"""The /_sim/ test control API (JSON over HTTP, on every live host's address) and its
Python client ``SimControl``.

It exists for tests, benchmarks and the demo: guest activity, host failure and master moves,
fault injection, and a state dump for assertions. Like the rest of the simulator it listens
on loopback only; it has no authentication, so never expose a simulator beyond 127.0.0.0/8.
"""

import json
import random
import urllib.error
import urllib.request

from . import inventory as inv
from .api.sessions import drop_all_sessions
from .content import ContentProfile
from .errors import XapiError

ACTIONS = {}
DEFERRING = {"fail_host"}  # actions that take work to run after the reply is sent


def action(name):
    def register(fn):
        ACTIONS[name] = fn
        return fn
    return register


def handle_control(handler, name: str) -> None:
    sim = handler.sim
    deferred: list = []
    length = int(handler.headers.get("Content-Length") or 0)
    try:
        args = json.loads(handler.rfile.read(length) or b"{}") if handler.command == "POST" else {}
        fn = ACTIONS.get(name)
        if fn is None:
            raise XapiError("UNKNOWN_CONTROL_ACTION", name)
        if name in DEFERRING:
            args["deferred"] = deferred
        result = fn(sim, **args)
        code, body = 200, {"ok": True, "result": result}
    except XapiError as e:
        code, body = 400, {"ok": False, "error": e.details}
    except (TypeError, ValueError, KeyError, LookupError) as e:
        code, body = 400, {"ok": False, "error": ["BAD_CONTROL_REQUEST", repr(e)]}
    handler.send_plain(code, json.dumps(body), "application/json")
    for step in deferred:  # e.g. stopping the server that carried this very request
        step()


# -- lookups ----------------------------------------------------------------------------
def _host(sim, host) -> str:
    """A host given as ref, uuid, address or index."""
    db = sim.db
    if isinstance(host, int):
        return sim.hosts()[host]
    if db.exists("host", host):
        return host
    for ref, rec in db.all("host").items():
        if host in (rec["uuid"], rec["address"], rec["name_label"]):
            return ref
    raise XapiError("HANDLE_INVALID", "host", host)


def _obj(sim, cls: str, value: str) -> str:
    db = sim.db
    if db.exists(cls, value):
        return value
    if value in db.by_uuid[cls]:
        return db.by_uuid[cls][value]
    found = db.find(cls, name_label=value) if cls in ("VM", "VDI", "SR", "network") else []
    if found:
        return found[0]
    raise XapiError("HANDLE_INVALID", cls, value)


# -- state ------------------------------------------------------------------------------
@action("state")
def state(sim):
    db = sim.db
    with db.lock:
        hosts = [{"ref": h, "uuid": db.get("host", h)["uuid"], "address": db.get("host", h)["address"],
                  "live": h in sim.live_hosts(), "master": h == sim.master(), "url": sim.url_of(h)}
                 for h in sim.hosts()]
        vms = []
        for ref, rec in db.all("VM").items():
            vms.append({"ref": ref, "uuid": rec["uuid"], "name_label": rec["name_label"],
                        "power_state": rec["power_state"], "resident_on": rec["resident_on"],
                        "is_a_template": rec["is_a_template"], "is_a_snapshot": rec["is_a_snapshot"],
                        "is_control_domain": rec["is_control_domain"],
                        "vdis": [db.get("VDI", vdi)["uuid"] for _, vdi in inv.vm_disks(sim, ref)]})
        srs = [{"ref": r, "uuid": s["uuid"], "name_label": s["name_label"], "shared": s["shared"],
                "physical_size": s["physical_size"], "physical_utilisation": inv.sr_usage(sim, r)[0]}
               for r, s in db.all("SR").items()]
        return {"product_version": sim.product.version, "master": sim.master(), "hosts": hosts, "vms": vms,
                "srs": srs, "sessions": len(db.all("session")), "tls": sim.config.tls,
                "nbd_ports": {h: s.port for h, s in sim.nbd_servers.items()}}


@action("records")
def records(sim, cls: str):
    with sim.db.lock:
        return json.loads(json.dumps(sim.db.all(cls)))


# -- guest activity and content ------------------------------------------------------------
@action("guest_write")
def guest_write(sim, blocks: int, vdi: str | None = None, vm: str | None = None, disk: int = 0, seed=None):
    """Write ``blocks`` random 64 KiB blocks into a VDI (or the ``disk``-th disk of a VM);
    returns the VDI uuid and the block indices written."""
    with sim.db.lock:
        if vdi is None:
            vm_ref = _obj(sim, "VM", vm)
            vdi = inv.vm_disks(sim, vm_ref)[disk][1]
        else:
            vdi = _obj(sim, "VDI", vdi)
        uuid = sim.db.get("VDI", vdi)["uuid"]
        rng = random.Random(seed) if seed is not None else sim.rng
        written = sim.disks.guest_write(uuid, int(blocks), rng)
        inv.refresh_vdi(sim, vdi)
        inv.refresh_sr(sim, sim.db.get("VDI", vdi)["SR"])
        return {"vdi": uuid, "blocks": written}


@action("fill_disk")
def fill_disk(sim, vdi: str, seed: int = 1, zero: float = 0.4, text: float = 0.3, **fractions):
    """Fill a VDI with demo content; ``random`` (a JSON key) is the incompressible fraction."""
    profile = ContentProfile(zero=zero, text=text, random=fractions.get("random", 0.3))
    with sim.db.lock:
        ref = _obj(sim, "VDI", vdi)
        uuid = sim.db.get("VDI", ref)["uuid"]
    sim.disks.fill(uuid, int(seed), profile)
    with sim.db.lock:
        inv.refresh_vdi(sim, ref)
        inv.refresh_sr(sim, sim.db.get("VDI", ref)["SR"])
    return {"vdi": uuid}


@action("create_vm")
def create_vm(sim, name: str, disks: list, os: str = "linux", power_state: str = "Halted", sr: str | None = None,
              host=None, written_blocks: int = 0, memory: int = 256 << 20, ha_restart_priority: str = ""):
    from .demo import make_vm
    with sim.db.lock:
        vm = make_vm(sim, name, [int(d) for d in disks], os=os, power_state=power_state,
                     sr=_obj(sim, "SR", sr) if sr else None, host=_host(sim, host) if host is not None else None,
                     written_blocks=int(written_blocks), memory=int(memory), ha_restart_priority=ha_restart_priority)
        rec = sim.db.get("VM", vm)
        return {"ref": vm, "uuid": rec["uuid"],
                "vdis": [sim.db.get("VDI", vdi)["uuid"] for _, vdi in inv.vm_disks(sim, vm)]}


@action("create_sr")
def create_sr(sim, name: str, type: str = "lvmoiscsi", size: int = 64 << 30, shared: bool | None = None):
    """A storage repository of another kind (e.g. lvm, lvmoiscsi, lvmohba: thick LVM, see
    lvhd.py); shared ones are seen by every host, local ones by the master only."""
    from .demo import _sr
    with sim.db.lock:
        shared = type != "lvm" if shared is None else bool(shared)
        hosts = sim.hosts() if shared else [sim.master()]
        ref = _sr(sim, name, type, int(size), hosts, shared=shared)
        return {"ref": ref, "uuid": sim.db.get("SR", ref)["uuid"]}


@action("add_vms")
def add_vms(sim, n: int, prefix: str = "scale-vm"):
    from .demo import add_small_vms
    with sim.db.lock:
        return add_small_vms(sim, int(n), prefix)


@action("delete_vm")
def delete_vm(sim, vm: str, with_disks: bool = True):
    """Remove a VM as if someone deleted it behind the console's back."""
    with sim.db.lock:
        ref = _obj(sim, "VM", vm)
        vdis = [vdi for _, vdi in inv.vm_disks(sim, ref)]
        inv.set_power_state(sim, ref, "Halted")
        inv.destroy_vm(sim, ref)
        if with_disks:
            for vdi in vdis:
                if sim.db.exists("VDI", vdi):
                    inv.destroy_vdi(sim, vdi)
        return ref


@action("set_power_state")
def set_power_state(sim, vm: str, power_state: str, host=None):
    with sim.db.lock:
        ref = _obj(sim, "VM", vm)
        target = _host(sim, host) if host is not None else sim.master()
        inv.set_power_state(sim, ref, power_state, target if power_state in ("Running", "Paused") else "OpaqueRef:NULL")
        return ref


# -- pool events ------------------------------------------------------------------------------
@action("fail_host")
def fail_host(sim, host, deferred=None):
    return sim.fail_host(_host(sim, host), deferred)


@action("recover_host")
def recover_host(sim, host):
    sim.recover_host(_host(sim, host))
    return sim.master()


@action("move_master")
def move_master(sim, host):
    sim.move_master(_host(sim, host))
    return sim.master()


@action("set_product_version")
def set_product_version(sim, version: str):
    sim.apply_product_version(version)
    return sim.product.version


@action("set_timing")
def set_timing(sim, **seconds):
    """How long snapshots, checkpoints, shutdowns and coalesce take (timing.DEFAULTS)."""
    from .timing import DEFAULTS
    for kind, value in seconds.items():
        if kind not in DEFAULTS:
            raise XapiError("BAD_CONTROL_REQUEST", "unknown timing %s" % kind)
        sim.config.timings[kind] = float(value)
    return {kind: sim.config.timings.get(kind, default) for kind, default in DEFAULTS.items()}


@action("expire_sessions")
def expire_sessions(sim):
    with sim.db.lock:
        count = len(sim.db.all("session"))
        drop_all_sessions(sim)
        return count


@action("set_session_timeout")
def set_session_timeout(sim, seconds: float):
    sim.config.session_timeout = float(seconds)
    return sim.config.session_timeout


# -- faults -----------------------------------------------------------------------------------
@action("fail_next_call")
def fail_next_call(sim, method: str, error: list, times: int = 1):
    sim.faults.fail_next_call(method, error, int(times))
    return True


@action("drop_transfer")
def drop_transfer(sim, after_bytes: int, count: int = 1):
    sim.faults.drop_transfers_after(int(after_bytes), int(count))
    return True


@action("rate_limit")
def rate_limit(sim, bytes_per_second: int):
    sim.faults.transfer_rate = int(bytes_per_second)
    return True


@action("fill_sr")
def fill_sr(sim, sr: str, free_bytes: int):
    """Make an SR report only ``free_bytes`` free (0 = full)."""
    with sim.db.lock:
        ref = _obj(sim, "SR", sr)
        sim.faults.sr_fill.pop(ref, None)
        used, _ = inv.sr_usage(sim, ref)
        size = sim.db.get("SR", ref)["physical_size"]
        sim.faults.sr_fill[ref] = max(0, size - used - int(free_bytes))
        inv.refresh_sr(sim, ref)
        return sim.faults.sr_fill[ref]


# -- changed block tracking (xapisim.cbt) ---------------------------------------------------
@action("lose_cbt_log")
def lose_cbt_log(sim, vdi: str):
    """The VDI's CBT log is found inconsistent after a host crash and dropped, as sm's
    _disable_cbt_on_error does: log gone, cbt_enabled false, a VDI_CBT_METADATA_INCONSISTENT
    message. Snapshots taken before are unrelated to any taken after."""
    from . import cbt
    with sim.db.lock:
        ref = _obj(sim, "VDI", vdi)
        cbt.lose_log(sim, ref)
        return sim.db.get("VDI", ref)["uuid"]


@action("set_cbt_licence")
def set_cbt_licence(sim, allowed: bool):
    """pool.restrictions restrict_cbt: without the licence VDI.enable_cbt fails with
    LICENCE_RESTRICTION ["CBT"] (disable_cbt and VDIs already tracking are unaffected)."""
    from . import cbt
    with sim.db.lock:
        cbt.set_licensed(sim, bool(allowed))
        return cbt.licensed(sim)


@action("set_sr_type")
def set_sr_type(sim, sr: str, type: str):
    """Make an SR report another driver type, e.g. one whose sm driver lacks VDI_CONFIG_CBT."""
    with sim.db.lock:
        ref = _obj(sim, "SR", sr)
        sim.db.update("SR", ref, type=str(type))
        return ref


@action("transfer_log")
def transfer_log(sim):
    """Every transfer interval the pool served: kind (/export, /import, nbd...), serving host
    uuid, target, start and end (epoch seconds; end null while it runs)."""
    return sim.transfer_log.entries()


@action("clear_transfer_log")
def clear_transfer_log(sim):
    return sim.transfer_log.clear()


@action("clear_faults")
def clear_faults(sim):
    with sim.db.lock:
        srs = list(sim.faults.sr_fill)
        sim.faults.clear()
        for sr in srs:
            inv.refresh_sr(sim, sr)
    return True


# -- client -----------------------------------------------------------------------------------
class SimControlError(Exception):
    def __init__(self, details):
        self.details = details
        super().__init__(", ".join(map(str, details)))


class SimControl:
    """Python client of the control API. ``base_url`` is a host URL; ``fallback_urls`` are
    tried when it refuses connections (after its host was failed)."""

    def __init__(self, base_url: str, fallback_urls: list[str] = (), *, timeout: float = 60):
        self.urls = [base_url.rstrip("/")] + [u.rstrip("/") for u in fallback_urls]
        self.timeout = timeout

    def call(self, _action: str, **args):
        import ssl
        body = json.dumps(args).encode()
        context = ssl._create_unverified_context()  # the simulator's certificate is self-signed
        last = None
        for url in self.urls:
            request = urllib.request.Request(url + "/_sim/" + _action, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout, context=context) as reply:
                    return json.load(reply)["result"]
            except urllib.error.HTTPError as e:
                raise SimControlError(json.load(e).get("error", [str(e)])) from None
            except (urllib.error.URLError, ConnectionError) as e:
                last = e
        raise ConnectionError("no simulator host answered: %s" % last)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda **args: self.call(name, **args)

    # Named wrappers for the most used actions (the rest work through __getattr__).
    def state(self) -> dict:
        return self.call("state")

    def guest_write(self, blocks: int, *, vdi: str | None = None, vm: str | None = None, disk: int = 0,
                    seed: int | None = None) -> dict:
        return self.call("guest_write", blocks=blocks, vdi=vdi, vm=vm, disk=disk, seed=seed)

    def fail_host(self, host) -> dict:
        return self.call("fail_host", host=host)

    def recover_host(self, host) -> str:
        return self.call("recover_host", host=host)

    def move_master(self, host) -> str:
        return self.call("move_master", host=host)

    def fail_next_call(self, method: str, error: list, times: int = 1) -> bool:
        return self.call("fail_next_call", method=method, error=error, times=times)

    def drop_transfer(self, after_bytes: int, count: int = 1) -> bool:
        return self.call("drop_transfer", after_bytes=after_bytes, count=count)

    def rate_limit(self, bytes_per_second: int) -> bool:
        return self.call("rate_limit", bytes_per_second=bytes_per_second)

    def fill_sr(self, sr: str, free_bytes: int) -> int:
        return self.call("fill_sr", sr=sr, free_bytes=free_bytes)

    def set_product_version(self, version: str) -> str:
        return self.call("set_product_version", version=version)

    def expire_sessions(self) -> int:
        return self.call("expire_sessions")

    def create_vm(self, name: str, disks: list[int], **kw) -> dict:
        return self.call("create_vm", name=name, disks=disks, **kw)
