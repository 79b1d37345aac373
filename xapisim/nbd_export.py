"""Wiring of the NBD servers (xapisim.nbd) into the pool: one per live host when a network
has an nbd purpose, the export-name resolver, and VDI.get_nbd_info records."""

import threading
import urllib.parse

from . import inventory as inv
from .api.sessions import check_session
from .errors import XapiError
from .nbd import NbdRefused, NbdServer

class PluggedExport:
    """A VDI served over NBD while xapi-nbd holds it plugged into the host's dom0: a read-only
    VBD exists, currently attached, for the connection's life (xapi-nbd ``src/main.ml``
    handle_connection, ``Cleanup.VBD.with_vbd``: VBD.create on the control domain, plug,
    serve, unplug, destroy). While it exists VDI.destroy and VDI.data_destroy fail with
    VDI_IN_USE (xapi_vdi.ml). The connection is also an interval in the pool's transfer log."""

    def __init__(self, sim, reader, vbd: str, host_uuid: str, vdi_uuid: str):
        self.sim = sim
        self.reader = reader
        self.vbd = vbd
        self.size = reader.size
        self._interval = sim.transfer_log.start("nbd", host_uuid, vdi_uuid)

    def read(self, offset: int, length: int) -> bytes:
        return self.reader.read(offset, length)

    def close(self) -> None:
        self.sim.transfer_log.end(self._interval)
        self.reader.close()
        # From another thread: the connection may be closing because a call holding the db
        # lock stops this server (network purpose changed) and waits for it.
        threading.Thread(target=self._unplug, name="nbd-unplug", daemon=True).start()

    def _unplug(self) -> None:
        with self.sim.db.lock:
            if self.sim.db.exists("VBD", self.vbd):
                inv.destroy_vbd(self.sim, self.vbd)


def forget_leaked_vbds(sim) -> None:
    """After a restart, the dom0 VBDs of connections that were open are removed, as xapi-nbd
    does at start-up from its list of VBDs not yet cleaned up (``lib/vbd_store.ml``)."""
    for vbd, rec in list(sim.db.all("VBD").items()):
        if sim.db.exists("VM", rec["VM"]) and sim.db.get("VM", rec["VM"])["is_control_domain"]:
            inv.destroy_vbd(sim, vbd)


def _plug_into_dom0(sim, host: str, vdi: str) -> str:
    dom0 = sim.db.get("host", host)["control_domain"]
    used = {sim.db.get("VBD", v)["userdevice"] for v in sim.db.get("VM", dom0)["VBDs"]}
    userdevice = next(str(i) for i in range(1, 1024) if str(i) not in used)
    return inv.create_vbd(sim, dom0, vdi, userdevice, bootable=False, mode="RO", type="Disk",
                          unpluggable=True, currently_attached=True, device="xvd" + chr(ord("a") + int(userdevice) % 26),
                          other_config={})


def resolver(sim, host: str):
    def resolve(name: str):
        path, _, query = name.partition("?")
        session = urllib.parse.parse_qs(query).get("session_id", [""])[0]
        with sim.db.lock:
            try:
                check_session(sim, session)
                vdi = sim.db.ref_of_uuid("VDI", path.lstrip("/"))
            except XapiError as e:
                raise NbdRefused(" ".join(e.details)) from None
            rec = sim.db.get("VDI", vdi)
            if rec["type"] == "cbt_metadata" or not sim.disks.has_data(rec["uuid"]):
                raise NbdRefused("VDI %s has no data" % rec["uuid"])
            reader = sim.disks.open_reader(rec["uuid"])
            host_uuid = sim.db.get("host", host)["uuid"]
            return PluggedExport(sim, reader, _plug_into_dom0(sim, host, vdi), host_uuid, rec["uuid"])
    return resolve


def start_nbd_servers(sim) -> None:
    if not sim.nbd_networks():
        return
    mode = sim.nbd_mode()
    for host in sim.live_hosts():
        if host in sim.nbd_servers:
            continue
        server = NbdServer(sim.db.get("host", host)["address"], sim.config.nbd_port, resolver(sim, host), mode=mode,
                           ssl_context=sim.certificates[host][0] if mode == "tls" else None)
        server.start()
        sim.nbd_servers[host] = server


def nbd_info(sim, session: str, vdi: str) -> list[dict]:
    """One record per IP of each attached PIF on an nbd network, on every live host that
    sees the VDI's SR (xapi_vdi.ml get_nbd_info)."""
    db = sim.db
    rec = db.get("VDI", vdi)
    records = []
    for host in inv.hosts_seeing_sr(sim, rec["SR"]):
        server = sim.nbd_servers.get(host)
        if server is None:
            continue
        for network in sim.nbd_networks():
            for pif in db.get("network", network)["PIFs"]:
                pif_rec = db.get("PIF", pif)
                if pif_rec["host"] == host and pif_rec["currently_attached"] and pif_rec["IP"]:
                    records.append({
                        "exportname": "/%s?session_id=%s" % (rec["uuid"], session),
                        "address": pif_rec["IP"],
                        "port": server.port,
                        "cert": sim.certificates[host][1],
                        "subject": db.get("host", host)["address"],
                    })
    return records
