"""The long-running and background entry points: follow_events (a real process) and the
django-q2 sync task."""
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from xenpools.models import VM, Host
from xenpools.tasks import sync_pool_task

from .xenapi_helpers import vm_by_power_state, xenapi_session

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_sync_task_syncs_the_pool(sim, make_pool):
    pool = make_pool(sim, sync=False)

    outcome = sync_pool_task(pool.pk)

    assert outcome.startswith("pool lab:")
    assert Host.objects.filter(pool=pool).exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_follow_events_runs_as_a_process_and_stops_on_sigterm(sim, make_pool):
    pool = make_pool(sim, sync=False)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if connection.vendor == "sqlite":
        env["SESAM_SQLITE_PATH"] = connection.settings_dict["NAME"]
    else:      # point the process at the test database
        env["DATABASE_URL"] = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + connection.settings_dict["NAME"]))
    process = subprocess.Popen([sys.executable, "manage.py", "follow_events", "--pool", "lab", "--event-timeout", "0.5"],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not VM.objects.filter(pool=pool).exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the follower never wrote the inventory"
            time.sleep(0.2)
        with xenapi_session(sim.url) as x:
            ref, record = vm_by_power_state(x, "Halted")
            x.VM.start(ref, False, False)
        while VM.objects.get(pool=pool, uuid=record["uuid"]).power_state != "Running":
            assert time.monotonic() < deadline, "the follower never saw the VM start"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "following lab" in output
