"""PoolConnection against the simulator: login, errors an admin can act on, redirects, TLS pins."""
import http.server
import threading
from xml.parsers.expat import ExpatError

import XenAPI
import pytest

from xenpools.connection import (
    PoolAuthenticationFailed, PoolCertificateChanged, PoolCertificateUnknown, PoolConnection,
    PoolConnectionLost, PoolUnreachable,
    fetch_fingerprint, parse_address,
)
from xenpools.models import Pool

WRONG_FINGERPRINT = ":".join(["AB"] * 32)


def test_the_connection_test_describes_the_pool(sim):
    probe = PoolConnection.probe(sim.url, "root", sim.password, fingerprint=None)

    assert probe.master_address == "127.0.0.1"
    assert probe.redirected_from is None
    assert probe.product_version and probe.product_brand
    assert len(probe.hosts) >= 2
    assert [address for _name, address, is_master in probe.hosts if is_master] == ["127.0.0.1"]
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", sim.password, "1.0", "test")
    try:
        guests = [r for r in session.xenapi.VM.get_all_records().values()
                  if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"])]
    finally:
        session.xenapi.session.logout()
    assert probe.vm_count == len(guests) > 0
    assert probe.fingerprint is None            # plain http: nothing to pin


def test_it_refuses_a_wrong_password(sim):
    with pytest.raises(PoolAuthenticationFailed, match="refused the user name or password for 'root'"):
        PoolConnection.probe(sim.url, "root", "not-the-password", fingerprint=None)


def test_it_reports_an_unreachable_address(sim):
    port = sim.port
    sim.stop()
    with pytest.raises(PoolUnreachable, match=f"cannot reach 127.0.0.1:{port}: connection refused"):
        PoolConnection.probe(f"http://127.0.0.1:{port}", "root", "demo", fingerprint=None)


def test_a_member_address_leads_to_the_master(sim):
    probe = PoolConnection.probe(sim.member_url(1), "root", sim.password, fingerprint=None)

    assert probe.redirected_from == "127.0.0.2"
    assert probe.master_address == "127.0.0.1"


def test_first_contact_over_tls_asks_the_admin_to_confirm_the_fingerprint(tls_sim):
    actual = fetch_fingerprint(parse_address(tls_sim.url))

    with pytest.raises(PoolCertificateUnknown) as unknown:
        PoolConnection.probe(tls_sim.url, "root", tls_sim.password, fingerprint=None)
    assert unknown.value.fingerprint == actual
    assert actual in str(unknown.value)

    probe = PoolConnection.probe(tls_sim.url, "root", tls_sim.password, fingerprint=actual)
    assert probe.fingerprint == actual


def test_a_fingerprint_the_admin_did_not_confirm_is_refused_before_the_password_is_sent(tls_sim):
    with pytest.raises(PoolCertificateUnknown):
        PoolConnection.probe(tls_sim.url, "root", tls_sim.password, fingerprint=WRONG_FINGERPRINT)


def test_a_changed_certificate_is_refused(tls_sim, make_pool):
    actual = fetch_fingerprint(parse_address(tls_sim.url))
    pool = make_pool(tls_sim, fingerprint=actual, sync=False)
    pool.fingerprints = {"127.0.0.1": WRONG_FINGERPRINT}
    pool.save()

    with pytest.raises(PoolCertificateChanged) as changed:
        PoolConnection.open(Pool.objects.get(pk=pool.pk))
    assert changed.value.expected == WRONG_FINGERPRINT
    assert changed.value.fingerprint == actual
    assert f"expected fingerprint {WRONG_FINGERPRINT}, got {actual}" in str(changed.value)


def test_a_pinned_pool_connects_over_tls(tls_sim, make_pool):
    actual = fetch_fingerprint(parse_address(tls_sim.url))
    pool = make_pool(tls_sim, fingerprint=actual)

    assert pool.fingerprints["127.0.0.1"] == actual
    with PoolConnection.open(pool) as connection:
        assert connection.xenapi.pool.get_all()


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.5", ("https", "10.0.0.5", 443)),
    ("10.0.0.5:8443", ("https", "10.0.0.5", 8443)),
    ("http://127.0.0.1:8123", ("http", "127.0.0.1", 8123)),
    ("https://pool.example:443", ("https", "pool.example", 443)),
    ("HTTPS://pool.example", ("https", "pool.example", 443)),
])
def test_it_understands_the_address_forms(text, expected):
    address = parse_address(text)
    assert (address.scheme, address.host, address.port) == expected


@pytest.mark.parametrize("text", ["", "ftp://h", "https://h/path", "h:notaport"])
def test_it_rejects_addresses_it_cannot_use(text):
    with pytest.raises(ValueError):
        parse_address(text)


def test_https_to_a_plain_http_pool_says_so(sim):
    with pytest.raises(PoolUnreachable, match="TLS handshake with 127.0.0.1:.* use http://"):
        PoolConnection.probe(f"https://127.0.0.1:{sim.port}", "root", sim.password, fingerprint=None)


def test_a_held_xenapi_follows_a_planned_master_move(sim, make_pool):
    pool = make_pool(sim)
    with PoolConnection.open(pool) as connection:
        xenapi = connection.xenapi          # held across the move, as the engine does
        vms = xenapi.VM.get_all()
        member = next(ref for ref, host in xenapi.host.get_all_records().items() if host["address"] == "127.0.0.2")
        sim.control.move_master(xenapi.host.get_uuid(member))

        assert xenapi.VM.get_all() == vms     # HOST_IS_SLAVE from the old master, answered by the new one

        assert connection.master_address == "127.0.0.2"
    pool.refresh_from_db()
    assert pool.master_address == "127.0.0.2"


class _EmptyReplyHandler(http.server.BaseHTTPRequestHandler):
    """A master dying mid-call: the reply's headers arrive, its XML body never does."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_broken_reply_mid_call_is_a_lost_connection_not_a_parser_error(sim, make_pool):
    pool = make_pool(sim)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EmptyReplyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with PoolConnection.open(pool) as connection:
            connection.session = XenAPI.Session(f"http://127.0.0.1:{server.server_port}")
            connection.session._session = "OpaqueRef:dead"

            with pytest.raises(PoolConnectionLost, match="lost the connection to 127.0.0.1 during VM.get_all") as lost:
                connection.xenapi.VM.get_all()
            assert isinstance(lost.value, PoolUnreachable)       # what the engine retries on
            assert isinstance(lost.value.__cause__, ExpatError)
            connection.session = None
    finally:
        server.shutdown()
        server.server_close()
