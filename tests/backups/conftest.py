"""Backup test helpers: a registered simulator pool, a data store, raw disk reads."""
import base64
import http.client
import os
import socket
from urllib.parse import urlsplit

import pytest
import XenAPI

from backups.stores import create_store
from xenpools.connection import PoolConnection
from xenpools.models import VM
from xenpools.registration import register_pool

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def pool(sim, transactional_db):
    """The simulator pool, registered and synced as the add-pool wizard does it."""
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)
    return register_pool("lab", sim.url, "root", sim.password, probe, sync=True)


def import_moto_server():
    """moto's server module; a missing moto skips the S3 tests on a developer machine but
    fails them on CI (CI=true), where a skip would hide that S3 went untested."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        import moto.server
        return moto.server
    return pytest.importorskip("moto.server", reason="moto[server] is not installed")


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-speaking server on loopback (moto in server mode)."""
    moto_server = import_moto_server()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def store(tmp_path, transactional_db):
    return create_store(name="local", path=str(tmp_path / "store"), passphrase=PASSPHRASE)


@pytest.fixture
def vm_named(pool):
    def find(name):
        return VM.objects.get(pool=pool, name=name, is_snapshot=False)
    return find


class PoolReader:
    """Independent access to the simulator: the XenAPI client and plain HTTP."""

    def __init__(self, sim):
        self.sim = sim
        self.session = XenAPI.Session(sim.url)
        self.session.login_with_password("root", sim.password, "1.0", "tests")
        self.xenapi = self.session.xenapi

    def vm(self, uuid):
        return self.xenapi.VM.get_by_uuid(uuid)

    def disks(self, vm_uuid):
        """{userdevice: VDI uuid} of the VM's disks."""
        vm_ref = self.vm(vm_uuid)
        disks = {}
        for vbd in self.xenapi.VM.get_VBDs(vm_ref):
            record = self.xenapi.VBD.get_record(vbd)
            if record["type"] == "Disk":
                disks[record["userdevice"]] = self.xenapi.VDI.get_uuid(record["VDI"])
        return disks

    def raw(self, vdi_uuid) -> bytes:
        parts = urlsplit(self.sim.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        auth = base64.b64encode(f"root:{self.sim.password}".encode()).decode()
        connection.request("GET", f"/export_raw_vdi?vdi={vdi_uuid}&format=raw", headers={"Authorization": f"Basic {auth}"})
        response = connection.getresponse()
        assert response.status == 200, response.read()[:200]
        data = response.read()
        connection.close()
        return data

    def snapshots(self):
        """Every snapshot VM in the pool (name, uuid)."""
        return [(r["name_label"], r["uuid"]) for r in self.xenapi.VM.get_all_records().values() if r["is_a_snapshot"]]

    def close(self):
        if self.session is not None:
            try:
                self.session.xenapi.session.logout()
            except OSError:      # the master may be gone (failover tests)
                pass
            self.session = None


@pytest.fixture
def pool_reader(sim):
    reader = PoolReader(sim)
    yield reader
    reader.close()
