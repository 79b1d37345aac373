"""`manage.py doctor` (sesamweb/dashboard/doctor.py): all good on a healthy installation, and each
problem by name: Redis stopped, no worker, a store that cannot be written, a pool that is down."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.stores import create_store
from tests.fixtures.cluster import REPO, shared_database_env
from tests.fixtures.services import free_port
from xenpools.connection import PoolConnection
from xenpools.registration import register_pool

pytestmark = pytest.mark.slow


@pytest.fixture
def pool(sim, transactional_db):
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)
    return register_pool("lab", sim.url, "root", sim.password, probe, sync=True)


@pytest.fixture
def store(tmp_path, transactional_db):
    return create_store(name="nas", path=str(tmp_path / "store"), passphrase="doctor passphrase 12")


def doctor(capsys, *args):
    """(all good?, output)."""
    try:
        call_command("doctor", *args)
        ok = True
    except CommandError as exc:
        ok = False
        print(exc)
    return ok, capsys.readouterr().out


def line(output, check):
    return next(text for text in output.splitlines() if f" {check} " in f"{text} ")


def test_a_healthy_installation_is_all_good(capsys, qcluster, pool, store):
    qcluster.start()
    ok, output = doctor(capsys, "--worker-wait", "120")
    assert ok, output
    assert "All good." in output
    assert line(output, "workers").startswith("ok") and "a worker ran the test task" in output
    assert "pool lab" in output and "certificate as pinned" in line(output, "pool lab")
    assert f"{store.path} writable" in line(output, "data store nas")


def test_no_worker_a_store_that_cannot_be_written_and_a_pool_that_is_down_are_named(capsys, pool, store, sim):
    store_dir = Path(store.path)
    # Root writes anywhere whatever the mode; the immutable flag stops even root.
    if subprocess.run(["chattr", "+i", str(store_dir)], capture_output=True).returncode != 0:
        reason = "chattr +i is not supported on this file system"
        pytest.fail(reason) if os.environ.get("CI", "").lower() == "true" else pytest.skip(reason)
    try:
        sim.stop()
        ok, output = doctor(capsys, "--worker-wait", "1")
    finally:
        subprocess.run(["chattr", "-i", str(store_dir)], check=True)
    assert not ok
    assert line(output, "workers").startswith("PROBLEM") and "no worker took a test task within 1 s" in output
    assert "manage.py qcluster" in output
    assert line(output, "data store nas").startswith("PROBLEM") and f"cannot write to {store.path}" in output
    assert line(output, "pool lab").startswith("PROBLEM") and "connection refused" in line(output, "pool lab")
    assert line(output, "database").startswith("ok")
    assert "3 problem(s): workers, pool lab, data store nas" in output


def test_redis_stopped_is_named_for_the_broker_and_the_channel_layer(transactional_db):
    closed = free_port()
    env = {**shared_database_env(), "REDIS_URL": f"redis://127.0.0.1:{closed}/0"}
    result = subprocess.run([sys.executable, "manage.py", "doctor", "--worker-wait", "1"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode != 0
    broker, layer = line(result.stdout, "task broker"), line(result.stdout, "channel layer")
    assert broker.startswith("PROBLEM") and f"Redis at redis://127.0.0.1:{closed}/0 not reachable" in broker
    assert layer.startswith("PROBLEM") and "Redis channel layer not reachable" in layer
    assert "start Redis or correct REDIS_URL" in result.stdout
