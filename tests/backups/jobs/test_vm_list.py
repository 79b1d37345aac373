"""The VM list's protection columns and filters, its bulk actions by role (Add to job for
administrators, audited; Back up now for operators, busy VMs skipped with the reason), and
the protection panel of the VM page."""
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from backups.jobs.choices import Protection, SelectionMode
from backups.models import BackupJob, BackupRun, VmBackup
from backups.stores import create_store
from sesamweb.audit.models import AuditEvent

from .inventory import HOURS, make_point, make_pool, make_vm

VM_LIST = reverse("xenpools:vm_list")
ADD_TO_JOB = reverse("backups:vms_add_to_job")
BACK_UP_NOW = reverse("backups:vms_back_up_now")


@pytest.fixture
def plain_store(tmp_path, db):
    return create_store(name="nas", path=str(tmp_path / "nas"), encrypted=False)


@pytest.fixture
def estate(db, plain_store):
    """web-1 met, web-2 missed, db-1 never backed up (all in "nightly"), spare in no job."""
    now = timezone.now()
    pool = make_pool("lab")
    vms = {name: make_vm(pool, name) for name in ("web-1", "web-2", "db-1", "spare")}
    make_point(plain_store, vms["web-1"], 2 * HOURS, now=now)
    make_point(plain_store, vms["web-2"], 40 * HOURS, now=now)
    nightly = BackupJob.objects.create(name="nightly", store=plain_store, selection=SelectionMode.EXPLICIT,
                                       rpo_hours=24)
    nightly.vms.add(vms["web-1"], vms["web-2"], vms["db-1"])
    chosen = BackupJob.objects.create(name="hand-picked", store=plain_store, selection=SelectionMode.EXPLICIT)
    BackupJob.objects.create(name="by tag", store=plain_store, selection=SelectionMode.RULE, rule_tags=["x"])
    return {"pool": pool, "vms": vms, "nightly": nightly, "chosen": chosen, "store": plain_store}


def row_names(response):
    return [vm.name for vm in response.context["vms"]]


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_list_shows_status_last_good_point_and_jobs(auditor_client, estate):
    response = auditor_client.get(VM_LIST)

    assert response.status_code == 200
    states = {vm.name: vm.protection for vm in response.context["vms"]}
    assert {name: state.status for name, state in states.items()} == {
        "web-1": Protection.MET, "web-2": Protection.MISSED, "db-1": Protection.NEVER, "spare": Protection.UNPROTECTED}
    page = response.content.decode()
    for label in ("RPO met", "RPO missed", "Never backed up", "In no job", "2 h ago", "40 h ago", "nightly"):
        assert label in page, label


@pytest.mark.parametrize("query, expected", [
    ({"protection": "missed"}, ["web-2"]),
    ({"protection": "unprotected"}, ["spare"]),
    ({"protection": "never", "q": "db"}, ["db-1"]),
])
def test_the_list_filters_by_protection_status(auditor_client, estate, query, expected):
    assert row_names(auditor_client.get(VM_LIST, query)) == expected


def test_the_list_filters_by_job(auditor_client, estate):
    response = auditor_client.get(VM_LIST, {"job": estate["nightly"].pk})
    assert row_names(response) == ["db-1", "web-1", "web-2"]
    assert row_names(auditor_client.get(VM_LIST, {"job": estate["chosen"].pk})) == []


def test_an_auditor_sees_no_bulk_actions_and_cannot_post_them(auditor_client, estate):
    page = auditor_client.get(VM_LIST).content.decode()
    assert 'id="vm-bulk"' not in page and "Back up now" not in page

    vm = estate["vms"]["spare"]
    assert auditor_client.post(ADD_TO_JOB, {"vm": [vm.pk], "job": estate["chosen"].pk}).status_code == 403
    assert auditor_client.post(BACK_UP_NOW, {"vm": [vm.pk], "store": estate["store"].pk}).status_code == 403
    assert not estate["chosen"].vms.exists() and not BackupRun.objects.exists()


def test_an_operator_backs_up_but_cannot_add_to_a_job(operator_client, estate):
    page = operator_client.get(VM_LIST).content.decode()
    assert "Back up now" in page and "Add to job" not in page
    vm = estate["vms"]["spare"]
    assert operator_client.post(ADD_TO_JOB, {"vm": [vm.pk], "job": estate["chosen"].pk}).status_code == 403


def test_an_administrator_adds_the_selected_vms_to_an_explicit_job_and_it_is_audited(admin_client, estate):
    vms, chosen = estate["vms"], estate["chosen"]
    page = admin_client.get(VM_LIST).content.decode()
    assert "Add to job" in page and f'<option value="{chosen.pk}">hand-picked</option>' in page
    assert ">by tag</option>" not in page.split('id="bulk-job"')[1].split("</select>")[0]   # rule jobs are not offered

    response = admin_client.post(ADD_TO_JOB, {"vm": [vms["spare"].pk, vms["db-1"].pk], "job": chosen.pk,
                                              "next": f"{VM_LIST}?protection=unprotected"}, follow=True)

    assert response.redirect_chain[-1][0] == f"{VM_LIST}?protection=unprotected"
    assert set(chosen.vms.all()) == {vms["spare"], vms["db-1"]}
    assert "2 VM(s) added to job hand-picked." in messages_of(response)
    event = AuditEvent.objects.get(action="update", target_repr="hand-picked")
    assert event.actor == admin_client.user and "spare" in event.message
    # spare is now covered (never backed up yet); the unprotected filter no longer lists it.
    assert row_names(response) == []


def test_add_to_job_refuses_a_rule_job_and_skips_vms_already_in_it(admin_client, estate):
    vms = estate["vms"]
    rule_job = BackupJob.objects.get(name="by tag")
    response = admin_client.post(ADD_TO_JOB, {"vm": [vms["spare"].pk], "job": rule_job.pk})
    assert "selects VMs by a rule" in " ".join(messages_of(response))
    assert not rule_job.vms.exists()

    response = admin_client.post(ADD_TO_JOB, {"vm": [vms["web-1"].pk], "job": estate["nightly"].pk})
    assert messages_of(response)[-1] == "web-1 skipped: already in job nightly."
    assert not AuditEvent.objects.filter(action="update", target_repr="nightly").exists()


def test_back_up_now_queues_each_selected_vm_and_skips_busy_ones_with_the_reason(operator_client, estate):
    vms, store = estate["vms"], estate["store"]
    operator_client.post(BACK_UP_NOW, {"vm": [vms["web-1"].pk], "store": store.pk})     # web-1 now queued

    response = operator_client.post(BACK_UP_NOW, {"vm": [vms["web-1"].pk, vms["web-2"].pk, vms["spare"].pk],
                                                  "store": store.pk})

    assert response.status_code == 302 and response["Location"] == VM_LIST
    notes = messages_of(response)
    assert f"Backup of 2 VM(s) to {store.name} queued." in notes
    assert any(note.startswith("web-1 skipped: a backup of web-1 is already queued") for note in notes)
    queued = VmBackup.objects.order_by("pk")
    assert [row.vm_name for row in queued] == ["web-1", "spare", "web-2"]     # by name
    assert all(row.store == store and row.run.requested_by == operator_client.user for row in queued)
    assert [task.task["args"] for task in OrmQ.objects.order_by("id")] == [(row.pk,) for row in queued]
    assert AuditEvent.objects.filter(action="job_start", actor=operator_client.user).count() == 3


def test_a_bulk_action_without_a_selection_says_so(operator_client, estate):
    response = operator_client.post(BACK_UP_NOW, {"store": estate["store"].pk, "next": "https://evil.example/"})
    assert response["Location"] == VM_LIST                    # never redirected off the console
    assert messages_of(response) == ["Select at least one VM."]


def test_the_vm_page_shows_protection_jobs_and_the_last_good_point(auditor_client, estate):
    web2 = estate["vms"]["web-2"]
    page = auditor_client.get(web2.get_absolute_url()).content.decode()
    protection = page.split('id="protection-title"')[1].split("</section>")[0]
    assert "RPO missed" in protection and "24 h" in protection and "nightly" in protection
    assert (timezone.now() - 40 * HOURS).strftime("%Y-%m-%d") in protection and "nas" in protection

    spare = auditor_client.get(estate["vms"]["spare"].get_absolute_url()).content.decode()
    assert "In no job" in spare.split('id="protection-title"')[1]


def test_the_vm_list_stays_within_its_query_budget_with_protection(auditor_client, estate,
                                                                   django_assert_max_num_queries):
    for i in range(60):
        make_vm(estate["pool"], f"extra-{i}")
    with django_assert_max_num_queries(20):
        auditor_client.get(VM_LIST)
    with django_assert_max_num_queries(20):
        auditor_client.get(VM_LIST, {"protection": "unprotected", "page": 2})


def test_ages_are_shown_in_days_beyond_three_days(auditor_client, estate):
    make_point(estate["store"], estate["vms"]["spare"], timedelta(days=9), now=timezone.now())
    assert "9 d ago" in auditor_client.get(VM_LIST, {"q": "spare"}).content.decode()


def test_a_row_names_the_three_tightest_jobs_and_counts_the_others(auditor_client, estate):
    web1 = estate["vms"]["web-1"]
    for hours in (1, 2, 3, 4):
        job = BackupJob.objects.create(name=f"every {hours} h", store=estate["store"], selection=SelectionMode.EXPLICIT,
                                       rpo_hours=hours)
        job.vms.add(web1)
    row = auditor_client.get(VM_LIST, {"q": "web-1"}).content.decode().split(f'data-vm-id="{web1.pk}"')[1]
    jobs_cell = row.split('data-field="jobs">')[1].split("</td>")[0]
    assert "every 1 h" in jobs_cell and "every 3 h" in jobs_cell and "every 4 h" not in jobs_cell
    assert "+2 more" in jobs_cell                        # every 4 h and nightly


def test_an_unknown_job_or_store_is_not_found(admin_client, estate):
    vm = estate["vms"]["spare"]
    assert admin_client.post(ADD_TO_JOB, {"vm": [vm.pk], "job": "x"}).status_code == 404
    assert admin_client.post(BACK_UP_NOW, {"vm": [vm.pk], "store": "999"}).status_code == 404
