"""Notification test helpers: channels and rules made through the services (audited, as
the pages do), quick retries, and a self-signed certificate."""
import pytest

from sesamweb.notify.models import Channel, Rule
from sesamweb.notify.services import save_channel, save_rule

from tests.fixtures.receivers import SelfSignedCert


@pytest.fixture(autouse=True)
def _notify_settings(settings):
    settings.SESAM_NOTIFY_TIMEOUT = 5
    settings.SESAM_NOTIFY_RETRY_BASE_SECONDS = 0     # retries due at once; tests step the worker
    settings.SESAM_BASE_URL = "https://console.example.test"


@pytest.fixture
def cert(tmp_path):
    return SelfSignedCert(tmp_path)


def make_channel(kind, name=None, *, secret=None, fallback=None, **config):
    channel = Channel(name=name or f"{kind}-channel", kind=kind, config=config, fallback=fallback)
    return save_channel(channel, secret=secret)


def route(*channels, events=(), min_severity="info", object_key="", **fields):
    rule = Rule(name=fields.pop("name", "route"), event_names=list(events), min_severity=min_severity,
                object_key=object_key, **fields)
    return save_rule(rule, channels=channels)


RUN_FAILED_OBJECTS = {
    "pool": {"id": 3, "name": "Lab pool", "url": "/pools/3/"},
    "host": {"name": "xcp-host-1"},
    "job": {"id": 12, "name": "nightly", "url": "/backups/jobs/12/"},
    "store": {"id": 1, "name": "nas-01", "url": "/backups/stores/1/"},
    "run": {"id": 40, "name": "Backup run #40", "url": "/backups/runs/40/"},
    "vms": [
        {"id": "u-1", "name": "web-1", "status": "success", "status_label": "Succeeded", "kind": "Incremental",
         "transfer": "CBT + NBD (changed blocks)", "duration_seconds": 12, "bytes_read": 120 << 20,
         "bytes_stored": 30 << 20},
        {"id": "u-2", "name": "db-1", "status": "failed", "status_label": "Failed", "kind": "Full",
         "transfer": "full XVA export", "error": "the pool refused: SR_FULL"},
    ],
}


def emit_run_failed():
    from sesamweb import notify

    return notify.emit("run.failed", "error", title="Backup nightly: 1 of 2 VM(s) failed (pool Lab pool)",
                       objects=RUN_FAILED_OBJECTS, details={"error": "db-1: the pool refused: SR_FULL"})
