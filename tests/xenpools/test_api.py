"""The pools REST API: same permissions as the UI, write-only password, test and sync actions."""
from sesamweb.audit.models import AuditEvent
from xenpools.connection import fetch_fingerprint, parse_address
from xenpools.models import VM, Host, Pool


def pool_payload(sim, **extra):
    return {"name": "lab", "address": sim.url, "username": "root", "password": sim.password, **extra}


def test_an_admin_adds_a_pool_and_never_sees_its_password(sim, api_client, run_queued_syncs):
    admin = api_client("administrator")

    created = admin.post("/api/pools/", pool_payload(sim), format="json")
    assert created.data["health"] == "unknown"          # its first sync is queued on a worker
    run_queued_syncs()
    listed = admin.get("/api/pools/")
    detail = admin.get(f"/api/pools/{created.data['id']}/")

    assert created.status_code == 201, created.data
    assert created.data["master_address"] == "127.0.0.1" and detail.data["health"] == "healthy"
    for response in (created, listed, detail):
        assert "password" not in str(response.content).replace("password_", "")
        assert sim.password not in response.content.decode()
    assert "password_encrypted" not in detail.data
    assert detail.data["vm_count"] == VM.objects.filter(is_snapshot=False).count() > 0


def test_a_wrong_password_is_a_clear_400(sim, api_client):
    response = api_client("administrator").post("/api/pools/", pool_payload(sim, password="wrong"), format="json")

    assert response.status_code == 400
    assert "refused the user name or password" in str(response.data["connection"])
    assert not Pool.objects.exists()


def test_a_new_certificate_must_be_confirmed_through_the_api(tls_sim, api_client):
    admin = api_client("administrator")
    fingerprint = fetch_fingerprint(parse_address(tls_sim.url))

    first = admin.post("/api/pools/", pool_payload(tls_sim), format="json")
    assert first.status_code == 400 and first.data["certificate_fingerprint"] == fingerprint

    confirmed = admin.post("/api/pools/", pool_payload(tls_sim, fingerprint=fingerprint), format="json")
    assert confirmed.status_code == 201
    assert confirmed.data["fingerprints"]["127.0.0.1"] == fingerprint


def test_the_test_action_reports_what_it_found(sim, api_client):
    response = api_client("administrator").post(
        "/api/pools/test/", {"address": sim.member_url(1), "password": sim.password}, format="json")

    assert response.status_code == 200
    assert response.data["master_address"] == "127.0.0.1"
    assert response.data["redirected_from"] == "127.0.0.2"
    assert not Pool.objects.exists()


def test_an_operator_cannot_add_change_or_delete_pools(sim, make_pool, api_client):
    pool = make_pool(sim, sync=False)
    operator = api_client("operator")

    assert operator.post("/api/pools/", pool_payload(sim, name="x"), format="json").status_code == 403
    assert operator.patch(f"/api/pools/{pool.pk}/", {"name": "x"}, format="json").status_code == 403
    assert operator.delete(f"/api/pools/{pool.pk}/").status_code == 403
    assert operator.post("/api/pools/test/", {"address": sim.url, "password": sim.password}, format="json").status_code == 403
    assert operator.get("/api/pools/").status_code == 200


def test_an_auditor_cannot_sync_and_an_operator_can(sim, make_pool, api_client, run_queued_syncs):
    pool = make_pool(sim, sync=False)

    assert api_client("auditor").post(f"/api/pools/{pool.pk}/sync/").status_code == 403
    operator = api_client("operator")
    queued = operator.post(f"/api/pools/{pool.pk}/sync/")

    assert queued.status_code == 202 and queued.data["state"] == "queued"
    assert queued["Location"] == queued.data["status_url"] and queued.data["status_url"].endswith(
        f"/api/pools/{pool.pk}/sync-status/")
    assert operator.post(f"/api/pools/{pool.pk}/sync/").status_code == 409       # one at a time
    run_queued_syncs()
    status = api_client("auditor").get(queued.data["status_url"])
    assert status.status_code == 200
    assert status.data["state"] == "idle" and status.data["ok"] is True and status.data["counts"]["vms"] > 0
    assert Host.objects.filter(pool=pool).exists()


def test_an_admin_renames_and_deletes_a_pool(sim, make_pool, api_client):
    pool = make_pool(sim, sync=False)
    admin = api_client("administrator")

    renamed = admin.patch(f"/api/pools/{pool.pk}/", {"name": "renamed"}, format="json")
    assert renamed.status_code == 200 and renamed.data["name"] == "renamed"
    assert admin.delete(f"/api/pools/{pool.pk}/").status_code == 204
    assert not Pool.objects.exists()
    assert AuditEvent.objects.filter(action="delete", target_type="xenpools.pool").exists()


def test_inventory_endpoints_are_read_only_and_filterable(sim, make_pool, api_client):
    pool = make_pool(sim)
    operator = api_client("operator")
    running = VM.objects.filter(pool=pool, power_state="Running", is_snapshot=False, removed_at=None)

    vms = operator.get("/api/vms/", {"power_state": "Running", "presence": "present"})
    one = operator.get(f"/api/vms/{running[0].pk}/")

    assert vms.status_code == 200 and vms.data["count"] == running.count()
    assert one.data["uuid"] == running[0].uuid and "disks" in one.data and "vifs" in one.data
    assert operator.get("/api/hosts/", {"pool": pool.pk}).data["count"] == Host.objects.filter(pool=pool).count()
    assert operator.get("/api/srs/").status_code == operator.get("/api/networks/").status_code == 200
    assert operator.post("/api/vms/", {}).status_code == 403
    assert api_client("administrator").post("/api/vms/", {}).status_code == 405


def test_the_openapi_schema_describes_the_pools_api(api_client):
    response = api_client("auditor").get("/api/schema/")

    assert response.status_code == 200
    assert b"/api/pools/{id}/sync/" in response.content and b"/api/vms/" in response.content


def test_an_admin_sets_the_pools_stream_limits_and_the_change_is_audited(sim, make_pool, api_client):
    pool = make_pool(sim, sync=False)
    admin = api_client("administrator")
    assert admin.get(f"/api/pools/{pool.pk}/").data["streams_per_host"] == 2

    changed = admin.patch(f"/api/pools/{pool.pk}/", {"streams_per_host": 3, "snapshots_at_once": 2}, format="json")
    refused = admin.patch(f"/api/pools/{pool.pk}/", {"streams_per_host": 0}, format="json")

    assert changed.status_code == 200, changed.data
    assert (changed.data["streams_per_host"], changed.data["snapshots_at_once"]) == (3, 2)
    assert refused.status_code == 400 and "streams_per_host" in refused.data
    pool.refresh_from_db()
    assert (pool.streams_per_host, pool.snapshots_at_once) == (3, 2)
    event = AuditEvent.objects.filter(action="update", target_type="xenpools.pool").latest("pk")
    assert (event.before["streams_per_host"], event.after["streams_per_host"]) == (2, 3)
