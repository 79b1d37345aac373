"""Several processes append to the audit log at once (web, workers, commands): the chain
must stay one straight line. Threads with their own database connections stand in for them."""
import threading

import pytest
from django.db import connection

from sesamweb.audit.chain import verify_chain
from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import record_event
from sesamweb.audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def append_from_four_threads():
    errors = []

    def writer(n):
        try:
            for i in range(15):
                record_event(AuditAction.UPDATE, target_type="t", target_id=f"{n}-{i}", source=f"worker-{n}")
        except Exception as error:  # collected: an exception in a thread would be lost
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(AuditEvent.objects.values_list("sequence", flat=True)) == list(range(1, 61))
    report = verify_chain()
    assert report.ok and report.checked == 60


def test_concurrent_writers_keep_the_chain_linear():
    append_from_four_threads()


@pytest.mark.integration
def test_concurrent_writers_on_postgresql_keep_the_chain_linear():
    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL=postgres://... (make test-integration)")
    append_from_four_threads()
