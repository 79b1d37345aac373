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


@pytest.fixture
def run_queued_syncs(db):
    """Run the syncs waiting on the ORM broker in this process, the function and arguments a
    worker would take from the queue (tests/xenpools/test_sync.py runs one on a real cluster)."""
    from django.utils.module_loading import import_string
    from django_q.models import OrmQ

    from xenpools.sync import SYNC_TASK

    def run():
        results = []
        for row in OrmQ.objects.order_by("id"):
            task = row.task
            if task["func"] == SYNC_TASK:
                row.delete()
                results.append(import_string(task["func"])(*task["args"], **task["kwargs"]))
        return results

    return run
