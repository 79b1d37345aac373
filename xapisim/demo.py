"""Building pools: the base pool (hosts, storage, networks, dom0s, templates), the --demo
VMs, the small VMs of --vms N and of the test fixture, and single VMs for the control API.
Everything is deterministic from the seed."""

from . import inventory as inv
from .content import ContentProfile
from .xmlrpc import Timestamp

GiB = 1 << 30
MiB = 1 << 20


def build_pool(sim, nhosts: int = 2) -> None:
    db = sim.db
    cfg = sim.config
    hosts = []
    for i in range(nhosts):
        hostname = "xcp-host-%d" % (i + 1)
        metrics = db.create("host_metrics", memory_total=256 * GiB, memory_free=200 * GiB, live=True,
                            last_updated=Timestamp.now())
        major, minor = sim.product.api_version
        host = db.create("host", name_label=hostname, hostname=hostname, address=cfg.host_address(i),
                         metrics=metrics, API_version_major=major, API_version_minor=minor,
                         software_version=sim.product.software_version(hostname),
                         cpu_info={"cpu_count": "16", "socket_count": "2", "vendor": "GenuineIntel"},
                         other_config={"iscsi_iqn": "iqn.2024-01.org.example:%s" % hostname})
        hosts.append(host)
    pool = db.create("pool", name_label="Demo pool", master=hosts[0], ha_enabled=True,
                     ha_host_failures_to_tolerate=1, ha_plan_exists_for=1)

    shared = _sr(sim, "Shared NFS storage", "nfs", 2048 * GiB, hosts, shared=True)
    for i, host in enumerate(hosts):
        _sr(sim, "Local storage on xcp-host-%d" % (i + 1), "ext", 512 * GiB, [host])
    _sr(sim, "ISO library", "iso", 100 * GiB, hosts, shared=True, content_type="iso")
    db.update("pool", pool, default_SR=shared, suspend_image_SR=shared, crash_dump_SR=shared)

    _network(sim, "Pool-wide network associated with eth0", "xenbr0", hosts, "eth0", management=True)
    _network(sim, "Storage network (NBD)", "xenbr1", hosts, "eth1", purpose=["insecure_nbd"])
    _network(sim, "Backup LAN", "xenbr2", hosts, "eth2")

    for i, host in enumerate(hosts):
        dom0 = inv.create_vm(sim, "Control domain on host: xcp-host-%d" % (i + 1), memory=4 * GiB, vcpus=8,
                             os="none", is_control_domain=True, domain_type="pv")
        inv.set_power_state(sim, dom0, "Running", host)
        db.update("VM", dom0, domid=0)
        db.update("host", host, control_domain=dom0)
    for name, os in (("Debian Bookworm 12", "linux"), ("Windows Server 2022 (64-bit)", "windows"),
                     ("Other install media", "linux")):
        inv.create_vm(sim, name, os="none", is_a_template=True, is_default_template=True,
                      other_config={"default_template": "true", "install-methods": "cdrom"})


def _sr(sim, name, type_, size, hosts, shared=False, content_type="user") -> str:
    db = sim.db
    sr = db.create("SR", name_label=name, type=type_, physical_size=size, shared=shared,
                   content_type=content_type, other_config={}, sm_config={"devserial": "scsi-xapisim"},
                   allowed_operations=["vdi_create", "vdi_destroy", "vdi_snapshot", "vdi_clone", "scan"])
    for host in hosts:
        pbd = db.create("PBD", host=host, SR=sr, currently_attached=True,
                        device_config={"location": "/var/run/sr-mount/%s" % name.replace(" ", "_")})
        db.add_to("SR", sr, "PBDs", pbd)
        db.add_to("host", host, "PBDs", pbd)
    return sr


def _network(sim, name, bridge, hosts, device, management=False, purpose=()) -> str:
    db = sim.db
    network = db.create("network", name_label=name, bridge=bridge, purpose=list(purpose),
                        other_config={"automatic": "true"})
    for host in hosts:
        address = db.get("host", host)["address"]
        pif = db.create("PIF", device=device, network=network, host=host, MAC=inv.random_mac(sim.rng),
                        IP=address, management=management, currently_attached=True)
        db.add_to("network", network, "PIFs", pif)
        db.add_to("host", host, "PIFs", pif)
    return network


def shared_sr(sim) -> str:
    return sim.db.get("pool", sim.pool_ref())["default_SR"]


def local_sr(sim, host: str) -> str:
    db = sim.db
    for pbd in db.get("host", host)["PBDs"]:
        sr = db.get("PBD", pbd)["SR"]
        if not db.get("SR", sr)["shared"]:
            return sr
    raise LookupError("host %s has no local SR" % host)


def management_network(sim) -> str:
    return sim.db.find("network", bridge="xenbr0")[0]


def make_vm(sim, name: str, disks: list[int], *, os: str = "linux", power_state: str = "Halted",
            sr: str | None = None, host: str | None = None, content: ContentProfile | None = None,
            written_blocks: int = 0, memory: int = 512 * MiB, vcpus: int = 2, seed: int | None = None,
            ha_restart_priority: str = "") -> str:
    """A VM with one disk per size in ``disks`` on ``sr`` (default the shared SR), a VIF on the
    management network, and content: ``content`` fills every disk, ``written_blocks`` writes
    that many random 64 KiB blocks."""
    db = sim.db
    sr = sr or shared_sr(sim)
    vm = inv.create_vm(sim, name, memory=memory, vcpus=vcpus, os=os, ha_restart_priority=ha_restart_priority,
                       name_description="%s test VM" % ("Windows" if os == "windows" else "Linux"))
    for i, size in enumerate(disks):
        vdi = inv.create_vdi(sim, sr, size, "%s disk %d" % (name, i), name_description="Disk %d of %s" % (i, name))
        uuid = db.get("VDI", vdi)["uuid"]
        if content is not None:
            sim.disks.fill(uuid, sim.rng.randrange(1 << 30) if seed is None else seed + i, content)
        if written_blocks:
            sim.disks.guest_write(uuid, min(written_blocks, max(1, size // 65536)), sim.rng)
        inv.refresh_vdi(sim, vdi)
        inv.create_vbd(sim, vm, vdi, str(i))
    inv.refresh_sr(sim, sr)
    inv.create_vif(sim, vm, management_network(sim), "0")
    if power_state in ("Running", "Paused"):
        on = host or _host_for_sr(sim, sr)
        inv.set_power_state(sim, vm, power_state, on)
    return vm


def _host_for_sr(sim, sr: str) -> str:
    seeing = inv.hosts_seeing_sr(sim, sr)
    return sim.master() if sim.master() in seeing else seeing[0]


DEMO_VMS = [
    # name, os, power, disk sizes, on local SR of host index (None = shared)
    ("web-01", "linux", "Running", [1 * GiB, 256 * MiB], None),
    ("db-01", "linux", "Running", [4 * GiB, 1 * GiB, 512 * MiB], None),
    ("mail-01", "linux", "Halted", [512 * MiB], None),
    ("ad-dc-01", "windows", "Running", [2 * GiB], None),
    ("fileserver-win", "windows", "Halted", [1 * GiB, 1 * GiB], None),
    ("build-agent", "linux", "Running", [512 * MiB], 0),
    ("monitoring", "linux", "Running", [256 * MiB, 64 * MiB], 1),
    ("legacy-app", "windows", "Halted", [768 * MiB], 1),
    ("dev-sandbox", "linux", "Halted", [128 * MiB], None),
    ("proxy-01", "linux", "Running", [64 * MiB], None),
]


# Mostly empty disks, as real ones are: ~2 GiB of data for the ~13 GiB of demo disks.
DEMO_CONTENT = ContentProfile(zero=0.85, text=0.08, random=0.07)


def add_demo_vms(sim) -> None:
    hosts = sim.hosts()
    seed = sim.config.seed
    for n, (name, os, power, sizes, local) in enumerate(DEMO_VMS):
        sr = local_sr(sim, hosts[local]) if local is not None else None
        host = hosts[local] if local is not None else hosts[n % len(hosts)]
        make_vm(sim, name, sizes, os=os, power_state=power, sr=sr, host=host, content=DEMO_CONTENT,
                seed=seed * 1000 + n * 10, ha_restart_priority="restart" if n % 3 == 0 else "")
        if name == "db-01":
            sim.db.update("VM", sim.db.find("VM", name_label=name)[0], tags=["production", "database"])


def add_small_vms(sim, count: int, prefix: str = "scale-vm") -> list[str]:
    """``count`` small VMs: --vms N uses 4 MiB empty disks; the test fixture (prefix
    'test-vm') gets 8-64 MiB disks with a few written blocks, one of them Windows."""
    made = []
    fixture = prefix == "test-vm"
    sizes = [8 * MiB, 16 * MiB, 32 * MiB, 64 * MiB]
    for i in range(count):
        if fixture:
            made.append(make_vm(sim, "%s-%d" % (prefix, i + 1), [sizes[i % 4]], os="windows" if i == 1 else "linux",
                                power_state="Running" if i % 2 == 0 else "Halted", written_blocks=8,
                                memory=64 * MiB, vcpus=1, ha_restart_priority="restart" if i == 0 else ""))
        else:
            made.append(make_vm(sim, "%s-%04d" % (prefix, i + 1), [4 * MiB], power_state="Halted",
                                memory=128 * MiB, vcpus=1))
    return made

