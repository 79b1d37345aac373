"""Pool and VM pages: the add-pool wizard, permissions, lists and details."""
from django.urls import reverse

from sesamweb.audit.models import AuditEvent
from xenpools.choices import PowerState
from xenpools.connection import fetch_fingerprint, parse_address
from xenpools.models import VM, Host, Pool

ADD = reverse("xenpools:pool_add")


def wizard_data(sim, **extra):
    insecure = {"allow_insecure": "on"} if sim.url.startswith("http://") else {}
    return {"name": "lab", "address": sim.url, "username": "root", "password": sim.password, **insecure, **extra}


def test_an_http_address_needs_an_explicit_insecure_choice(sim, admin_client):
    response = admin_client.post(ADD, {**wizard_data(sim), "allow_insecure": "", "add": "1"})

    assert "An http:// address is unencrypted" in response.content.decode()
    assert not Pool.objects.exists()

    admin_client.post(ADD, {**wizard_data(sim), "add": "1"})
    page = admin_client.get(Pool.objects.get(name="lab").get_absolute_url()).content.decode()
    assert "Unencrypted connection." in page


def test_the_wizard_tests_the_connection_then_adds_the_pool(sim, admin_client, run_queued_syncs):
    tested = admin_client.post(ADD, {**wizard_data(sim), "test": "1"})

    assert tested.status_code == 200
    assert tested.context["probe"].master_address == "127.0.0.1"
    assert b"Connection test passed" in tested.content
    assert not Pool.objects.exists()

    added = admin_client.post(ADD, {**wizard_data(sim), "add": "1"})

    pool = Pool.objects.get(name="lab")
    assert added.status_code == 302 and added.url == pool.get_absolute_url()
    assert pool.sync_state == "queued" and not VM.objects.filter(pool=pool).exists()   # the first sync: on a worker
    [outcome] = run_queued_syncs()
    pool.refresh_from_db()
    assert pool.health == "healthy" and VM.objects.filter(pool=pool).exists(), outcome
    assert pool.sync_state == "idle" and pool.sync_ok is True
    created = AuditEvent.objects.get(action="create", target_type="xenpools.pool")
    assert created.actor_username == admin_client.user.username
    assert sim.password not in str(created.after) and pool.password_encrypted not in str(created.after)


def test_the_typed_password_is_never_sent_back_and_the_next_step_still_has_it(sim, admin_client):
    secret = "a-typed-pool-password"
    sim_password = sim.password
    tested = admin_client.post(ADD, {**wizard_data(sim, password=sim_password), "test": "1"})
    assert tested.context["probe"] is not None
    assert sim_password.encode() not in tested.content
    draft = tested.context["form"]["draft"].value()
    assert draft and b"is kept for this step" in tested.content

    added = admin_client.post(ADD, {**wizard_data(sim, password="", draft=draft), "add": "1"})

    pool = Pool.objects.get(name="lab")
    assert added.status_code == 302 and pool.get_password() == sim_password
    refused = admin_client.post(ADD, {**wizard_data(sim, name="other", password="", draft=draft), "add": "1"})
    assert "Enter the password." in refused.content.decode()       # the draft went with the pool
    wrong = admin_client.post(ADD, {**wizard_data(sim, name="other", password=secret), "test": "1"})
    assert secret.encode() not in wrong.content


def test_the_wizard_explains_a_wrong_password(sim, admin_client):
    response = admin_client.post(ADD, {**wizard_data(sim, password="wrong"), "add": "1"})

    assert response.status_code == 200
    assert "refused the user name or password" in response.context["error"]
    assert not Pool.objects.exists()


def test_the_wizard_explains_an_unreachable_address(sim, admin_client):
    sim.stop()
    response = admin_client.post(ADD, {**wizard_data(sim), "test": "1"})

    assert "connection refused" in response.context["error"]


def test_the_wizard_follows_a_member_to_its_master(sim, admin_client):
    response = admin_client.post(ADD, {**wizard_data(sim, address=sim.member_url(1)), "add": "1"})

    pool = Pool.objects.get(name="lab")
    assert response.status_code == 302
    assert pool.master_address == "127.0.0.1" and pool.address == "127.0.0.1"


def test_the_wizard_asks_to_confirm_a_new_certificate(tls_sim, admin_client):
    fingerprint = fetch_fingerprint(parse_address(tls_sim.url))

    first = admin_client.post(ADD, {**wizard_data(tls_sim), "test": "1"})
    assert first.context["certificate"].fingerprint == fingerprint
    assert fingerprint.encode() in first.content
    unconfirmed = admin_client.post(ADD, {**wizard_data(tls_sim, fingerprint=fingerprint), "add": "1"})
    assert not Pool.objects.exists() and unconfirmed.context["certificate"]

    admin_client.post(ADD, {**wizard_data(tls_sim, fingerprint=fingerprint, trust_certificate="on"), "add": "1"})

    pool = Pool.objects.get(name="lab")
    assert pool.fingerprints["127.0.0.1"] == fingerprint
    assert AuditEvent.objects.filter(action="trust_certificate", target_id=str(pool.pk)).exists()


def test_an_operator_cannot_add_edit_or_delete_pools(sim, make_pool, operator_client):
    pool = make_pool(sim, sync=False)

    assert operator_client.get(ADD).status_code == 403
    assert operator_client.post(ADD, {**wizard_data(sim, name="other"), "add": "1"}).status_code == 403
    assert operator_client.get(reverse("xenpools:pool_edit", args=[pool.pk])).status_code == 403
    assert operator_client.post(reverse("xenpools:pool_delete", args=[pool.pk])).status_code == 403
    assert Pool.objects.count() == 1


def test_an_auditor_cannot_sync_but_an_operator_can(sim, make_pool, auditor_client, operator_client,
                                                    run_queued_syncs):
    pool = make_pool(sim, sync=False)
    sync = reverse("xenpools:pool_sync", args=[pool.pk])

    assert auditor_client.post(sync).status_code == 403
    assert not run_queued_syncs()
    assert operator_client.post(sync).status_code == 302
    assert not Host.objects.filter(pool=pool).exists()       # queued, not run inside the request
    run_queued_syncs()
    assert Host.objects.filter(pool=pool).exists()
    assert AuditEvent.objects.filter(action="sync", actor_username=operator_client.user.username).exists()


def test_an_admin_deletes_a_pool_after_confirming(sim, make_pool, admin_client):
    pool = make_pool(sim)
    url = reverse("xenpools:pool_delete", args=[pool.pk])

    assert b"Delete pool" in admin_client.get(url).content
    assert admin_client.post(url).status_code == 302
    assert not Pool.objects.exists() and not VM.objects.exists()
    assert AuditEvent.objects.filter(action="delete", target_type="xenpools.pool").exists()


def test_editing_a_pool_retests_it_and_keeps_the_password_when_left_empty(sim, make_pool, admin_client):
    pool = make_pool(sim, sync=False)
    url = reverse("xenpools:pool_edit", args=[pool.pk])
    form = admin_client.get(url)
    assert sim.password.encode() not in form.content.split(b"csrfmiddlewaretoken")[-1]

    response = admin_client.post(url, {"name": "renamed", "username": "root", "password": "", "save": "1"})

    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.name == "renamed" and pool.get_password() == sim.password
    wrong = admin_client.post(url, {"name": "renamed", "username": "root", "password": "wrong", "save": "1"})
    assert "refused" in wrong.context["error"]
    pool.refresh_from_db()
    assert pool.get_password() == sim.password


def test_pool_pages_show_hosts_storage_and_health(sim, make_pool, auditor_client):
    pool = make_pool(sim)

    listing = auditor_client.get(reverse("xenpools:pool_list"))
    detail = auditor_client.get(pool.get_absolute_url())

    assert listing.status_code == detail.status_code == 200
    assert b"lab" in listing.content and b"Healthy" in listing.content
    for host in Host.objects.filter(pool=pool):
        assert host.name.encode() in detail.content
    assert b"usage-fill" in detail.content and b"Master" in detail.content
    assert b"Sync now" not in detail.content          # auditors cannot sync


def test_the_vm_list_filters_searches_and_sorts(sim, make_pool, auditor_client):
    pool = make_pool(sim)
    url = reverse("xenpools:vm_list")
    running = VM.objects.filter(pool=pool, power_state=PowerState.RUNNING, is_snapshot=False)
    one = VM.objects.filter(pool=pool, is_snapshot=False).first()
    # A VM with a host (a halted one has none, and ?host= would not filter at all).
    host = running.exclude(host=None).first().host
    on_host = VM.objects.filter(pool=pool, is_snapshot=False, host=host)
    assert VM.objects.filter(pool=pool, is_snapshot=False).exclude(host=host).exists()  # the filter has work to do

    by_state = auditor_client.get(url, {"power_state": "Running"}).context["vms"]
    by_uuid = auditor_client.get(url, {"q": one.uuid[:8]}).context["vms"]
    by_host = auditor_client.get(url, {"host": host.pk}).context["vms"]
    descending = auditor_client.get(url, {"ordering": "-name"}).context["vms"]

    assert set(by_state) == set(running)
    assert list(by_uuid) == [one]
    assert set(by_host) == set(on_host)
    assert [vm.name for vm in descending] == sorted((vm.name for vm in descending), reverse=True)


def test_the_vm_list_filters_by_tag_and_os(db, auditor_client):
    pool = Pool.objects.create(name="p", address="h")
    tagged = VM.objects.create(pool=pool, uuid="u1", ref="r1", name="web", tags=["prod", "web"],
                               tags_index=VM.index_tags(["prod", "web"]), is_windows=True)
    VM.objects.create(pool=pool, uuid="u2", ref="r2", name="db", tags=["production"],
                      tags_index=VM.index_tags(["production"]))
    url = reverse("xenpools:vm_list")

    assert list(auditor_client.get(url, {"tag": "prod"}).context["vms"]) == [tagged]
    assert list(auditor_client.get(url, {"os": "windows"}).context["vms"]) == [tagged]


def test_the_vm_list_needs_a_bounded_number_of_queries_for_1000_vms(db, auditor_client, django_assert_max_num_queries):
    pool = Pool.objects.create(name="big", address="h")
    hosts = Host.objects.bulk_create(Host(pool=pool, uuid=f"h{i}", ref=f"H{i}", name=f"host{i}") for i in range(4))
    VM.objects.bulk_create(
        VM(pool=pool, uuid=f"vm-{i:04d}", ref=f"R{i}", name=f"vm-{i:04d}", host=hosts[i % 4],
           power_state=PowerState.RUNNING if i % 2 else PowerState.HALTED, tags=["t"], tags_index="|t|")
        for i in range(1000))
    url = reverse("xenpools:vm_list")

    with django_assert_max_num_queries(12):
        first = auditor_client.get(url)
    with django_assert_max_num_queries(12):
        last = auditor_client.get(url, {"page": 20, "ordering": "-host"})

    assert first.context["paginator"].count == 1000 and len(first.context["vms"]) == 50
    assert last.status_code == 200 and len(last.context["vms"]) == 50


def test_the_vm_page_shows_disks_networks_and_snapshots(sim, make_pool, auditor_client):
    pool = make_pool(sim)
    vm = VM.objects.filter(pool=pool, is_snapshot=False).exclude(disks=None).first()

    response = auditor_client.get(vm.get_absolute_url())

    assert response.status_code == 200
    for disk in vm.disks.exclude(vdi=None):
        assert disk.vdi.uuid.encode() in response.content
    for vif in vm.vifs.all():
        assert vif.mac.encode() in response.content
    assert b"Snapshots on the pool" in response.content


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get(reverse("xenpools:vm_list"))
    assert response.status_code == 302 and "sign-in" in response.url


def test_removed_vms_are_hidden_by_default_and_can_be_listed(db, auditor_client):
    from django.utils import timezone

    pool = Pool.objects.create(name="p", address="h")
    present = VM.objects.create(pool=pool, uuid="u1", ref="r1", name="still-here")
    gone = VM.objects.create(pool=pool, uuid="u2", ref="r2", name="deleted-on-pool", removed_at=timezone.now())
    url = reverse("xenpools:vm_list")

    assert list(auditor_client.get(url).context["vms"]) == [present]
    removed = auditor_client.get(url, {"presence": "removed"})
    assert list(removed.context["vms"]) == [gone] and b"Removed" in removed.content
    assert set(auditor_client.get(url, {"presence": ""}).context["vms"]) == {present, gone}
