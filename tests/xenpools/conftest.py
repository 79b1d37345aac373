"""Pool test helpers. `sim` comes from tests/fixtures/sim.py (a real simulator process)."""
import pytest

from xenpools.connection import PoolConnection
from xenpools.models import Pool
from xenpools.registration import register_pool


@pytest.fixture
def make_pool(db):
    """Register a pool on a running simulator the way the wizard does (probe, then save)."""

    def make(sim, name="lab", *, sync=True, url=None, fingerprint=None):
        address = url or sim.url
        probe = PoolConnection.probe(address, "root", sim.password, fingerprint=fingerprint)
        return register_pool(name, address, "root", sim.password, probe, sync=sync)

    return make



# --- TEMPORARY: an in-process simulator until tests/fixtures/sim.py (H3) lands ------------------
import socket  # noqa: E402

from xapisim.simulator import Config, Simulator  # noqa: E402


def _free_port():
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            for host in ("127.0.0.2", "127.0.0.3"):
                with socket.socket() as s:
                    s.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


class _Handle:
    password = "demo"

    def __init__(self, data_dir, tls=False):
        self.port, self.data_dir, self.tls = _free_port(), str(data_dir), tls
        self.start()

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def member_url(self, i):
        return f"{'https' if self.tls else 'http'}://127.0.0.{i + 1}:{self.port}"

    def start(self):
        self.nbd_port = getattr(self, "nbd_port", None) or _free_port()
        self.sim = Simulator(Config(port=self.port, data_dir=self.data_dir, tls=self.tls, nbd_port=self.nbd_port))
        self.sim.load_or_build(small=3)
        self.sim.start()

    def stop(self):
        if self.sim is not None:
            self.sim.stop()
            self.sim = None


@pytest.fixture
def sim(tmp_path):
    handle = _Handle(tmp_path / "sim")
    yield handle
    handle.stop()


@pytest.fixture
def tls_sim(tmp_path):
    handle = _Handle(tmp_path / "sim", tls=True)
    yield handle
    handle.stop()


# TEMPORARY helper until the shared fixture's control client exists.
def _fail_host(self, host_ref):
    return self.sim.fail_host(host_ref)


_Handle.fail_host = _fail_host
