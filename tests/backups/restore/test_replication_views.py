"""Replication policies in the console: an administrator creates, changes and removes them
(audited); every role sees each policy's last result per VM; operators and auditors cannot
change them; the page is reached from the navigation."""
import pytest
from django.urls import reverse

from backups.choices import BackupMethod, RunStatus
from backups.models_restore import ReplicationPolicy
from sesamweb.audit.models import AuditEvent
from xenpools.models import StorageRepository

from .conftest import back_up
from .test_replication import replicas, run_queued_replicas

LIST = reverse("backups:replication_list")


def form_data(pool, vms=(), **fields):
    data = {"name": "dr-site", "enabled": "on", "target_pool": pool.pk, "suffix": " (replica)", "keep": "2",
            "vms": [vm.pk for vm in vms], "network_lines": "", "source_store": "", "target_sr": ""}
    data.update(fields)
    return data


@pytest.mark.slow
def test_a_policy_made_in_the_console_replicates_and_shows_its_last_result(
        admin_client, auditor_client, vm_named, store, second_pool):
    other_pool, other_reader, _ = second_pool
    vm = vm_named("test-vm-2")
    sr = StorageRepository.objects.get(pool=other_pool, name="Shared NFS storage")
    page = admin_client.get(LIST).content.decode()
    assert "No replication policies" in page and reverse("backups:replication_add") in page
    response = admin_client.post(reverse("backups:replication_add"), form_data(
        other_pool, [vm], target_sr=sr.pk, network_lines="Pool-wide network associated with eth0 = Backup LAN"))
    assert response.status_code == 302, response.content.decode()[-2000:]

    policy = ReplicationPolicy.objects.get()
    assert (policy.vm_uuids, policy.target_pool, policy.target_sr, policy.keep) == ([vm.uuid], other_pool, sr, 2)
    assert policy.suffix == " (replica)"          # the leading space survives the form
    assert policy.network_map == {"Pool-wide network associated with eth0": "Backup LAN"}
    event = AuditEvent.objects.get(action="create", target_type="backups.replicationpolicy")
    assert event.actor == admin_client.user and event.message == "replication policy dr-site created"
    assert "Nothing replicated yet" in auditor_client.get(LIST).content.decode()

    back_up(vm, store, BackupMethod.NORMAL)
    [run] = run_queued_replicas()
    assert run.status == RunStatus.SUCCESS, run.error
    [(name, replica_uuid, power, _source)] = replicas(other_reader, vm.uuid)

    page = auditor_client.get(LIST).content.decode()
    assert "Replicas up to date" in page and "test-vm-2" in page and "Succeeded" in page
    assert replica_uuid[:10] in page and "Edit" not in page


def test_editing_a_policy_changes_it_and_the_audit_log_says_what_changed(admin_client, inventory_pools):
    pool, vm, sr = inventory_pools
    admin_client.post(reverse("backups:replication_add"), form_data(pool, [vm]))
    policy = ReplicationPolicy.objects.get()
    edit = reverse("backups:replication_edit", args=[policy.pk])
    page = admin_client.get(edit).content.decode()
    assert 'value="dr-site"' in page

    response = admin_client.post(edit, form_data(pool, [vm], keep="3", target_sr=sr.pk))   # enabled unticked below
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.keep, policy.target_sr) == (3, sr)
    event = AuditEvent.objects.get(action="update", target_type="backups.replicationpolicy")
    assert event.before["keep"] == 2 and event.after["keep"] == 3

    admin_client.post(edit, {**form_data(pool, [vm], keep="3"), "enabled": ""})
    policy.refresh_from_db()
    assert policy.enabled is False
    assert "Disabled" in admin_client.get(LIST).content.decode()


def test_bad_policies_are_refused_with_the_reason(admin_client, inventory_pools):
    pool, vm, sr = inventory_pools
    from xenpools.models import Pool

    elsewhere = Pool.objects.create(name="other", address="127.0.0.9", uuid="pool-2")
    cases = [
        (form_data(pool), "Choose the VMs to replicate, or a data store"),
        (form_data(pool, [vm], keep="0"), "Keep at least one replica per VM."),
        (form_data(elsewhere, [vm], target_sr=sr.pk), "belongs to pool lab, not to other"),
        (form_data(pool, [vm], network_lines="just-a-name"), "Line 1: write source network = target network."),
    ]
    for data, reason in cases:
        response = admin_client.post(reverse("backups:replication_add"), data)
        assert response.status_code == 400 and reason in response.content.decode(), reason
    assert not ReplicationPolicy.objects.exists()


def test_removing_a_policy_is_audited_and_only_for_administrators(
        admin_client, operator_client, auditor_client, inventory_pools):
    pool, vm, _sr = inventory_pools
    admin_client.post(reverse("backups:replication_add"), form_data(pool, [vm]))
    policy = ReplicationPolicy.objects.get()
    remove = reverse("backups:replication_remove", args=[policy.pk])
    for client in (operator_client, auditor_client):
        assert client.get(LIST).status_code == 200
        assert client.get(reverse("backups:replication_add")).status_code == 403
        assert client.post(reverse("backups:replication_add"), form_data(pool, [vm], name="x")).status_code == 403
        assert client.get(reverse("backups:replication_edit", args=[policy.pk])).status_code == 403
        assert client.post(remove).status_code == 403
    assert ReplicationPolicy.objects.count() == 1

    assert admin_client.post(remove).status_code == 302
    assert not ReplicationPolicy.objects.exists()
    event = AuditEvent.objects.get(action="delete", target_repr="dr-site")
    assert "its replicas stay on the pool" in event.message and event.actor == admin_client.user


def test_the_navigation_leads_to_replication(auditor_client, db):
    page = auditor_client.get(reverse("backups:store_list")).content.decode()
    assert f'href="{LIST}"' in page
    page = auditor_client.get(LIST).content.decode()
    assert f'href="{LIST}" aria-current="page"' in page          # Replication, not Restore, is current


def test_anonymous_visitors_are_sent_to_sign_in(client, db):
    assert client.get(LIST).status_code == 302


@pytest.fixture
def inventory_pools(db):
    from xenpools.models import VM, Pool

    pool = Pool.objects.create(name="lab", address="127.0.0.1", uuid="pool-uuid", product_version="8.2.1")
    vm = VM.objects.create(pool=pool, uuid="11111111-1111-1111-1111-111111111111", ref="OpaqueRef:1", name="web-01")
    sr = StorageRepository.objects.create(pool=pool, uuid="sr-1", ref="OpaqueRef:sr", name="Local storage")
    return pool, vm, sr


def test_the_command_line_and_the_pages_audit_policies_the_same_way(inventory_pools):
    from io import StringIO

    from django.core.management import call_command

    call_command("replication", "add", "cli-site", "--pool", "lab", "--vm", "web-01", "--keep", "2", stdout=StringIO())
    assert ReplicationPolicy.objects.get().suffix == " (replica)"
    call_command("replication", "remove", "cli-site", stdout=StringIO())
    assert not ReplicationPolicy.objects.exists()
    events = list(AuditEvent.objects.filter(message__startswith="replication policy cli-site")
                  .order_by("id").values_list("action", "source"))
    assert events == [("create", "cli:replication"), ("delete", "cli:replication")]
