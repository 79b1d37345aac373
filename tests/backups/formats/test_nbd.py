import random

import pytest

from backups.formats.nbd import MAX_REQUEST, NbdClient, NbdError, connect_from_nbd_info
from tests.backups.formats.conftest import MiB, need_tool
from tests.backups.formats.nbd_servers import (Nbdkit, XapiNbdLikeServer, free_port,
                                               make_self_signed_cert)

EXPORT = "/d15c0000-0000-4000-8000-000000000300?session_id=OpaqueRef:3f1c"


@pytest.fixture(scope="module")
def disk_file(tmp_path_factory, disk_odd):
    path = tmp_path_factory.mktemp("nbd") / "disk.raw"
    path.write_bytes(disk_odd)
    return path


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    return directory, make_self_signed_cert(directory)


@pytest.fixture
def nbdkit(disk_file, tmp_path):
    need_tool("nbdkit")
    server = Nbdkit(disk_file, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def nbdkit_tls(disk_file, tmp_path, certs):
    need_tool("nbdkit")
    server = Nbdkit(disk_file, tmp_path, tls_dir=certs[0])
    yield server
    server.stop()


@pytest.fixture
def xapi_like(disk_odd):
    server = XapiNbdLikeServer(disk_odd, EXPORT)
    yield server
    server.stop()


def test_it_reads_a_whole_disk_from_nbdkit(nbdkit, disk_odd):
    with NbdClient.connect("127.0.0.1", nbdkit.port, "", tls=False) as client:
        assert client.size == len(disk_odd)
        assert client.read(0, client.size) == disk_odd  # split into MAX_REQUEST pieces
        assert client.read(5 * 512, 3 * 512) == disk_odd[5 * 512 : 8 * 512]


def test_read_many_returns_every_range_in_order(nbdkit, disk_odd):
    rng = random.Random(3)
    ranges = sorted({rng.randrange(0, len(disk_odd) // 65536) * 65536 for _ in range(60)})
    ranges = [(offset, 65536) for offset in ranges] + [(len(disk_odd) - 3 * MAX_REQUEST // 2,
                                                         3 * MAX_REQUEST // 2)]
    with NbdClient.connect("127.0.0.1", nbdkit.port, "", tls=False) as client:
        pieces = list(client.read_many(ranges))
    expected = []
    for offset, length in ranges:  # long ranges come back in MAX_REQUEST pieces
        for start in range(offset, offset + length, MAX_REQUEST):
            end = min(start + MAX_REQUEST, offset + length)
            expected.append((start, disk_odd[start:end]))
    assert len(expected) > len(ranges)
    assert pieces == expected


def test_it_falls_back_to_export_name_when_go_is_unsupported(xapi_like, disk_odd):
    with NbdClient.connect("127.0.0.1", xapi_like.port, EXPORT, tls=False) as client:
        assert client.size == len(disk_odd) and client.flags == 3
        assert client.read(MiB, 2 * MiB) == disk_odd[MiB : 3 * MiB]
    assert xapi_like.options_seen == [7, 1]  # GO refused, then EXPORT_NAME


def test_pipelined_replies_out_of_order_are_matched_by_handle(xapi_like, disk_odd):
    ranges = [(i * 65536, 65536) for i in range(0, 200, 3)]
    with NbdClient.connect("127.0.0.1", xapi_like.port, EXPORT, tls=False) as client:
        pieces = list(client.read_many(ranges))
    assert pieces == [(o, disk_odd[o : o + n]) for o, n in ranges]
    assert xapi_like.max_in_flight > 1  # requests really were pipelined


def test_the_connection_stays_usable_after_the_caller_stops_reading_early(xapi_like,
                                                                          disk_odd):
    ranges = [(i * MiB, MiB) for i in range(12)]
    with NbdClient.connect("127.0.0.1", xapi_like.port, EXPORT, tls=False) as client:
        for offset, data in client.read_many(ranges):
            break  # replies for the other requests in flight are still on the wire
        assert client.read(7 * MiB, 4096) == disk_odd[7 * MiB : 7 * MiB + 4096]


def test_an_unknown_export_name_is_a_clear_error(xapi_like):
    with pytest.raises(NbdError, match="closed the connection on EXPORT_NAME"):
        NbdClient.connect("127.0.0.1", xapi_like.port, "/other?session_id=x", tls=False)


def test_unaligned_or_out_of_range_reads_are_refused(xapi_like, disk_odd):
    with NbdClient.connect("127.0.0.1", xapi_like.port, EXPORT, tls=False) as client:
        with pytest.raises(ValueError, match="aligned"):
            client.read(100, 512)
        with pytest.raises(ValueError, match="outside the export"):
            client.read(len(disk_odd) - 512, 1024)


def test_tls_with_the_pinned_host_certificate(nbdkit_tls, certs, disk_odd):
    _, pem = certs
    with NbdClient.connect("127.0.0.1", nbdkit_tls.port, "", tls=True, cert_pem=pem,
                           server_name="xcp-host-1") as client:
        assert client.read(0, client.size) == disk_odd


def test_tls_with_another_certificate_is_refused(nbdkit_tls, tmp_path):
    other = make_self_signed_cert(tmp_path / "other", common_name="xcp-host-1")
    with pytest.raises(NbdError, match="other than the pinned"):
        NbdClient.connect("127.0.0.1", nbdkit_tls.port, "", tls=True, cert_pem=other)


def test_a_server_that_requires_tls_refuses_cleartext(nbdkit_tls):
    with pytest.raises(NbdError, match="TLS required"):
        NbdClient.connect("127.0.0.1", nbdkit_tls.port, "", tls=False)


def test_tls_then_export_name_as_xapi_nbd_does(disk_odd, certs):
    directory, pem = certs
    server = XapiNbdLikeServer(disk_odd, EXPORT, tls_dir=directory)
    try:
        records = [{"exportname": EXPORT, "address": "127.0.0.1", "port": free_port(),
                    "cert": pem, "subject": "xcp-host-1"},  # nobody listens here
                   {"exportname": EXPORT, "address": "127.0.0.1", "port": server.port,
                    "cert": pem, "subject": "xcp-host-1"}]
        with connect_from_nbd_info(records, timeout=5) as client:
            pieces = list(client.read_many([(0, 4 * MiB), (8 * MiB, MiB)]))
        assert b"".join(d for o, d in pieces if o < 4 * MiB) == disk_odd[: 4 * MiB]
        assert server.options_seen == [5, 7, 1]  # STARTTLS, GO refused, EXPORT_NAME
    finally:
        server.stop()


def test_connect_from_nbd_info_reports_every_failure(tmp_path):
    records = [{"exportname": EXPORT, "address": "127.0.0.1", "port": free_port(),
                "cert": "", "subject": ""} for _ in range(2)]
    with pytest.raises(NbdError, match="no NBD export could be opened: .*; .*"):
        connect_from_nbd_info(records, tls=False, timeout=2)
    with pytest.raises(NbdError, match="no records"):
        connect_from_nbd_info([])
