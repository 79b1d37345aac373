"""Pool test helpers. `sim` comes from tests/fixtures/sim.py (a real simulator process)."""
import pytest

from xenpools.connection import PoolConnection
from xenpools.registration import register_pool


@pytest.fixture
def make_pool(db):
    """Register a pool on a running simulator the way the wizard does (probe, then save)."""

    def make(sim, name="lab", *, sync=True, url=None, fingerprint=None):
        address = url or sim.url
        probe = PoolConnection.probe(address, "root", sim.password, fingerprint=fingerprint)
        return register_pool(name, address, "root", sim.password, probe, sync=sync)

    return make




@pytest.fixture
def tls_sim(sim_factory):
    """A small simulated pool serving https with its self-signed certificate."""
    return sim_factory("--test-vms", "4", "--tls")
