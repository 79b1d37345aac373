"""Pools in a real browser: add the simulator pool through the wizard, see its VMs, and watch a
VM's power state change live (follower -> live path -> websocket -> page, no reload)."""
import threading

import pytest

from sesamweb.accounts.roles import Role
from tests.fixtures.users import make_user
from xenpools.connection import PoolConnection, fetch_fingerprint, parse_address
from xenpools.follower import EventFollower
from xenpools.models import VM, Pool
from xenpools.registration import register_pool

from ..xenpools.xenapi_helpers import vm_by_power_state, xenapi_session
from .test_backups import BrokerWorker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def admin(asgi_server):
    return make_user("alice-admin", Role.ADMINISTRATOR, first_name="Alice", last_name="Admin")


def test_an_administrator_adds_the_simulator_pool_and_sees_its_vms(asgi_server, admin, sim, page, screenshot):
    asgi_server.sign_in(page, "alice-admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Pools").click()
    page.get_by_role("link", name="Add pool").first.click()
    page.get_by_label("Name", exact=True).fill("Lab pool")
    page.get_by_label("Master address").fill(sim.member_url(1))
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password", exact=True).fill(sim.password)
    page.get_by_label("Connect over plain HTTP (insecure)").check()
    page.get_by_role("button", name="Test connection").click()
    page.get_by_text("Connection test passed").wait_for()
    assert "the pool master is 127.0.0.1" in page.locator("[data-test-result=ok]").inner_text()
    screenshot(page, "pool-add-tested")
    page.get_by_role("button", name="Add pool").click()

    page.get_by_role("heading", name="Hosts").wait_for()
    pool = Pool.objects.get(name="Lab pool")
    assert pool.master_address == "127.0.0.1"
    page.get_by_text("its first sync is running").wait_for()
    page.wait_for_selector('[data-live-state="live"]')
    worker = BrokerWorker()                # the first sync runs on a worker, not in the request
    worker.run_queued()
    worker.join()
    page.locator("[data-sync-message]").get_by_text("Synced:").wait_for()
    page.get_by_role("link", name="Show the new inventory").click()
    page.get_by_role("heading", name="Hosts").wait_for()
    assert page.get_by_text("Healthy").first.is_visible()
    screenshot(page, "pool-detail")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Virtual machines").click()
    page.locator("[data-vm-table]").wait_for()
    vms = VM.objects.filter(pool=pool, is_snapshot=False)
    for vm in vms:
        assert page.get_by_role("link", name=vm.name, exact=True).is_visible()
    screenshot(page, "vm-list")

    vm = vms.exclude(vifs=None).first()
    page.get_by_role("link", name=vm.name, exact=True).click()
    page.get_by_role("heading", name="Disks").wait_for()
    assert page.get_by_text(vm.vifs.first().mac).is_visible()
    screenshot(page, "vm-detail")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Pools").click()
    assert page.locator(f'tr[data-pool-id="{pool.pk}"] [data-field="vm_count"]').inner_text() == str(vms.count())
    screenshot(page, "pool-list")


def test_the_vm_list_shows_a_power_state_change_live(asgi_server, admin, sim, page, screenshot):
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)
    pool = register_pool("lab", sim.url, "root", sim.password, probe)
    follower = EventFollower(pool, event_timeout=0.5)
    thread = threading.Thread(target=follower.run, daemon=True)
    thread.start()
    try:
        with xenapi_session(sim.url) as x:
            ref, record = vm_by_power_state(x, "Halted")
            vm = VM.objects.get(pool=pool, uuid=record["uuid"])
            asgi_server.sign_in(page, "alice-admin")
            page.goto(asgi_server.url + "/pools/vms/")
            page.wait_for_selector('[data-live-state="live"]')
            badge = page.locator(f'tr[data-vm-id="{vm.pk}"] [data-field="power_state"]')
            assert badge.inner_text() == "Halted"
            page.evaluate("window.__notReloaded = true")

            x.VM.start(ref, False, False)

            page.wait_for_function(
                f"document.querySelector('tr[data-vm-id=\"{vm.pk}\"] [data-field=\"power_state\"]').textContent === 'Running'",
                timeout=20_000)
            assert page.evaluate("window.__notReloaded") is True
            screenshot(page, "vm-list-live-update")
    finally:
        follower.stop.set()
        thread.join(timeout=20)


def test_an_administrator_confirms_the_certificate_of_a_tls_pool(asgi_server, admin, sim_factory, page, screenshot):
    tls_sim = sim_factory("--test-vms", "2", "--tls")
    asgi_server.sign_in(page, "alice-admin")
    page.goto(asgi_server.url + "/pools/add/")
    page.get_by_label("Name", exact=True).fill("Secure pool")
    page.get_by_label("Master address").fill(tls_sim.url)
    page.get_by_label("Password", exact=True).fill(tls_sim.password)
    page.get_by_role("button", name="Test connection").click()

    shown = page.locator("[data-fingerprint]").inner_text()
    assert shown == fetch_fingerprint(parse_address(tls_sim.url))
    screenshot(page, "pool-add-certificate")
    page.get_by_label("I compared this fingerprint").check()
    page.get_by_role("button", name="Test connection").click()
    page.get_by_text("Connection test passed").wait_for()
    page.get_by_role("button", name="Add pool").click()

    page.get_by_role("heading", name="Hosts").wait_for()
    assert Pool.objects.get(name="Secure pool").fingerprints["127.0.0.1"] == shown


def following(page, selector, publish):
    """Events published before the page's subscription is active are not replayed: call
    `publish` (an event the card at `selector` applies) until the page has applied one."""
    from tests.fixtures.cluster import wait_for

    page.evaluate("""(selector) => {
      window.__applied = false;
      const observer = new MutationObserver(() => { window.__applied = true; observer.disconnect(); });
      observer.observe(document.querySelector(selector), {subtree: true, childList: true, characterData: true});
    }""", selector)

    def applied():
        publish()
        return page.evaluate("window.__applied")

    wait_for(applied, "the page to follow the pool's topic", timeout=30, interval=0.5)


def subscribed_before_the_worker_starts(page, pool):
    from xenpools.sync import publish_sync_state

    def republish():
        pool.refresh_from_db()
        publish_sync_state(pool)

    following(page, "[data-sync]", republish)
    page.evaluate("window.__seen = []")


def test_sync_now_shows_its_progress_live_then_the_result(asgi_server, sim, page, screenshot):
    make_user("oscar-operator", Role.OPERATOR)
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)
    pool = register_pool("lab", sim.url, "root", sim.password, probe, sync=False)
    asgi_server.sign_in(page, "oscar-operator")
    page.goto(asgi_server.url + pool.get_absolute_url())
    assert page.locator("[data-sync-never]").is_visible()

    page.get_by_role("button", name="Sync now").click()
    page.get_by_text("Sync of lab started").wait_for()
    running = page.locator("[data-sync-running]")
    assert running.is_visible() and running.locator("[data-sync-phase]").inner_text() == "Waiting for a worker"
    screenshot(page, "pool-sync-queued")
    page.wait_for_selector('[data-live-state="live"]')
    page.evaluate("""() => {
      window.__seen = [];
      const card = document.querySelector("[data-sync]");
      new MutationObserver(() => window.__seen.push({
        phase: card.querySelector("[data-sync-phase]").textContent,
        vms: card.querySelector('[data-count="vms"]').textContent,
        running: !card.querySelector("[data-sync-running]").hidden,
        message: card.querySelector("[data-sync-message]").textContent,
      })).observe(card, {subtree: true, childList: true, characterData: true, attributes: true});
    }""")
    subscribed_before_the_worker_starts(page, pool)
    worker = BrokerWorker()
    worker.run_queued()

    page.locator("[data-sync-message]").get_by_text("Synced:").wait_for()
    worker.join()
    seen = page.evaluate("window.__seen")
    shown_while_running = [s for s in seen if s["running"]]
    assert {"Reading the inventory", "Saving the inventory"} <= {s["phase"] for s in shown_while_running}, seen
    vms = VM.objects.filter(pool=pool, is_snapshot=False).count()
    assert any(s["vms"] == str(vms) for s in shown_while_running), seen
    assert not running.is_visible() and page.locator("[data-sync-outcome].alert-success").is_visible()
    page.locator('h1 [data-field="health"]', has_text="Healthy").wait_for()       # the pool event, live
    screenshot(page, "pool-sync-done")

    pool.set_password("not the password")
    pool.save(update_fields=["password_encrypted"])
    page.get_by_role("button", name="Sync now").click()
    page.get_by_text("Sync of lab started").wait_for()
    page.wait_for_selector('[data-live-state="live"]')
    worker = BrokerWorker()
    worker.run_queued()
    page.locator("[data-sync-message]").get_by_text("Wrong user name or password").wait_for()
    worker.join()
    assert page.locator("[data-sync-outcome].alert-danger").is_visible()
    screenshot(page, "pool-sync-failed")


def test_clean_up_now_lists_what_it_removed_on_the_pool_page(asgi_server, sim, page, screenshot, tmp_path):
    from datetime import timedelta

    import XenAPI

    from backups.stores import create_store
    from tests.backups.test_pool_cleanup import backup_left_behind

    make_user("oscar-operator", Role.OPERATOR)
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)
    pool = register_pool("lab", sim.url, "root", sim.password, probe, sync=True)
    store = create_store(name="local", path=str(tmp_path / "store"), passphrase="correct horse battery staple")
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", sim.password, "1.0", "test")
    try:
        vm = VM.objects.get(pool=pool, name="test-vm-1")
        killed, _, _ = backup_left_behind(session.xenapi, vm, store, heartbeat_age=timedelta(minutes=10),
                                          chain_disk=True)
    finally:
        session.xenapi.session.logout()
    asgi_server.sign_in(page, "oscar-operator")
    page.goto(asgi_server.url + pool.get_absolute_url())
    page.get_by_text("No clean-up pass has run on this pool yet.").wait_for()

    page.get_by_role("button", name="Clean up now").click()
    page.get_by_text("Clean-up of lab started").wait_for()
    assert page.locator("[data-cleanup-status]").inner_text() == "Waiting for a worker"
    page.wait_for_selector('[data-live-state="live"]')
    from backups.models import PoolCleanup
    from backups.pool_cleanup import publish_cleanup_state
    following(page, "[data-cleanup]", lambda: publish_cleanup_state(PoolCleanup.objects.get()))
    worker = BrokerWorker()
    worker.run_queued()
    worker.join()
    page.locator("[data-cleanup-summary]").get_by_text("2 leftover(s) removed").wait_for()    # live
    assert page.locator("[data-cleanup-status]").inner_text() == "Done"
    page.get_by_role("link", name="Show what was removed").click()

    removed = page.locator("[data-cleanup-removed] li")
    assert removed.count() == 2
    assert f"sesamweb backup {killed.pk} of test-vm-1" in removed.all_inner_texts()[0] + removed.all_inner_texts()[1]
    assert page.locator("[data-cleanup-summary]").inner_text() == "2 leftover(s) removed"
    screenshot(page, "pool-cleanup-done")
