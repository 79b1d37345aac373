"""At the size of a large site (2,000 VMs, 200 jobs, 100,000 past runs) the dashboard, the
VM list with its protection columns and filters, and the run list are each served with a
bounded number of queries. The job list view is not in this branch yet: its data, the
protection map, is asserted instead. Server times: bench/jobs_scale.py (no timing here)."""
import pytest
from django.urls import reverse

from backups.jobs.choices import Protection
from backups.jobs.protection import counts_per_pool, protection_map

from .scale_data import build_estate

pytestmark = pytest.mark.slow


@pytest.fixture
def estate(tmp_path, db):
    return build_estate(str(tmp_path))


def test_every_page_needs_a_bounded_number_of_queries_at_scale(estate, auditor_client, admin_client,
                                                              django_assert_max_num_queries):
    assert (estate["vms"], estate["jobs"], estate["runs"]) == (2000, 200, 100_000)

    with django_assert_max_num_queries(7):
        protection = protection_map()
    statuses = {state.status for state in protection.values()}
    assert statuses == set(Protection.values)           # the estate mixes every status
    assert len(counts_per_pool(protection)) == 4

    # (url, query, most queries): what one request needs at this size (bench/jobs_scale.py
    # prints the counts); none of them grows with VMs, jobs or runs.
    pages = {
        "dashboard": (reverse("dashboard"), {}, 32),      # +2: device servers down, backups waiting for one
        "vm list": (reverse("xenpools:vm_list"), {}, 20),
        "vm list, at risk": (reverse("xenpools:vm_list"), {"protection": "at_risk", "page": 2}, 20),
        "vm list, one job": (reverse("xenpools:vm_list"), {"job": 1}, 20),
        "job list": (reverse("backups:job_list"), {}, 12),
        "run list": (reverse("backups:index"), {}, 12),
        "run list, page 100": (reverse("backups:index"), {"page": 100}, 12),
    }
    for name, (url, query, most) in pages.items():
        for client in (auditor_client, admin_client):       # administrators also get the bulk actions
            with django_assert_max_num_queries(most, info=name):
                response = client.get(url, query)
            assert response.status_code == 200, name
    vms = admin_client.get(reverse("xenpools:vm_list"), {"protection": "missed"}).context["vms"]
    assert vms and all(vm.protection.status == Protection.MISSED for vm in vms)
