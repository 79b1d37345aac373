"""Wiring of the NBD servers (xapisim.nbd) into the pool: one per live host when a network
has an nbd purpose, the export-name resolver, and VDI.get_nbd_info records."""

import urllib.parse

from . import inventory as inv
from .api.sessions import check_session
from .errors import XapiError
from .nbd import NbdRefused, NbdServer

class _LoggedExport:
    """A VDI reader whose NBD connection is an interval in the pool's transfer log."""

    def __init__(self, sim, reader, host: str, vdi_uuid: str):
        self._reader = reader
        self._sim = sim
        self._interval = sim.transfer_log.start("nbd", host, vdi_uuid)
        self.size = reader.size

    def read(self, offset: int, length: int) -> bytes:
        return self._reader.read(offset, length)

    def close(self) -> None:
        self._sim.transfer_log.end(self._interval)
        self._reader.close()


def resolver(sim, host: str = ""):
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
            host_uuid = sim.db.get("host", host)["uuid"] if host else ""
            return _LoggedExport(sim, sim.disks.open_reader(rec["uuid"]), host_uuid, rec["uuid"])
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
