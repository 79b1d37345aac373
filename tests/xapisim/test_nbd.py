"""The simulator's NBD server answers exactly like xapi-nbd (xapi-project/nbd 6.0.1).

A raw-socket client below checks the wire byte by byte; nbdcopy and qemu-img check that
real clients see what they would see on a real host.
"""

import datetime
import hashlib
import ipaddress
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import urllib.parse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xapisim.nbd import NbdRefused, NbdServer

MiB = 1024 * 1024
DISK_SIZE = 64 * MiB
VDI_UUID = "0b6e3c1a-5f0e-4a39-9d2c-6f1f4c8f2e11"
EXPORT_NAME = f"/{VDI_UUID}?session_id=OpaqueRef:7d4f6a8e-2c53-4b1e-a0f4-3e9b5c6d7a81"

NBD_OPT_EXPORT_NAME = 1
NBD_OPT_ABORT = 2
NBD_OPT_LIST = 3
NBD_OPT_STARTTLS = 5
NBD_OPT_INFO = 6
NBD_OPT_GO = 7
NBD_OPT_STRUCTURED_REPLY = 8
NBD_OPT_LIST_META_CONTEXT = 9
NBD_OPT_SET_META_CONTEXT = 10

NBD_REP_ACK = 1
NBD_REP_ERR_UNSUP = 0x80000001
NBD_REP_ERR_POLICY = 0x80000002
NBD_REP_ERR_INVALID = 0x80000003
NBD_REP_ERR_TLS_REQD = 0x80000005

NBD_CMD_READ = 0
NBD_CMD_WRITE = 1
NBD_CMD_DISC = 2
NBD_CMD_FLUSH = 3
NBD_CMD_TRIM = 4
NBD_CMD_CACHE = 5
NBD_CMD_WRITE_ZEROES = 6
NBD_CMD_BLOCK_STATUS = 7
NBD_CMD_FLAG_FUA = 1 << 16

EPERM = 1
EINVAL = 22


# --- the disk being served ---------------------------------------------------------------


def _build_disk() -> bytes:
    """64 MiB, mostly zeros, with random regions at aligned and odd places and at the end."""
    rng = random.Random(20261125)
    disk = bytearray(DISK_SIZE)
    regions = [(0, MiB), (10 * MiB + 4096, 300 * 1024), (33 * MiB, 5 * MiB), (DISK_SIZE - 512, 512)]
    for offset, length in regions:
        disk[offset : offset + length] = rng.randbytes(length)
    return bytes(disk)


DISK = _build_disk()
DISK_SHA256 = hashlib.sha256(DISK).hexdigest()


class BytesExport:
    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)
        self.closed = threading.Event()

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def close(self) -> None:
        self.closed.set()


class Resolver:
    """Knows one export name; records every name asked for and every export handed out."""

    def __init__(self):
        self.names: list[str] = []
        self.exports: list[BytesExport] = []

    def __call__(self, name: str) -> BytesExport:
        self.names.append(name)
        if name != EXPORT_NAME:
            raise NbdRefused(f"no VDI for {name!r}")
        export = BytesExport(DISK)
        self.exports.append(export)
        return export


# --- TLS material ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1, laid out for libnbd and for Python ssl.

    libnbd's ``tls-certificates=DIR`` reads ``DIR/ca-cert.pem`` (and a client certificate
    if one is there, which we do not want), so the server's files live elsewhere.
    """
    base = tmp_path_factory.mktemp("nbd-tls")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xapisim test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    host_key = ec.generate_private_key(ec.SECP256R1())
    host_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(host_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    client_dir = base / "client"
    server_dir = base / "server"
    client_dir.mkdir()
    server_dir.mkdir()
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    (client_dir / "ca-cert.pem").write_bytes(ca_pem)
    (server_dir / "cert.pem").write_bytes(host_cert.public_bytes(serialization.Encoding.PEM))
    (server_dir / "key.pem").write_bytes(
        host_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {"client_dir": client_dir, "server_dir": server_dir, "ca_pem": ca_pem.decode()}


@pytest.fixture
def server_tls_context(certificates):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates["server_dir"] / "cert.pem", certificates["server_dir"] / "key.pem")
    return context


@pytest.fixture
def client_tls_context(certificates):
    context = ssl.create_default_context(cadata=certificates["ca_pem"])
    return context


# --- servers -----------------------------------------------------------------------------


@pytest.fixture
def resolver():
    return Resolver()


@pytest.fixture
def start_server(resolver):
    """Start an NbdServer on an ephemeral loopback port; every one is stopped at teardown."""
    servers = []

    def start(mode="insecure", resolve=resolver, **options):
        server = NbdServer("127.0.0.1", 0, resolve, mode=mode, **options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def insecure_server(start_server):
    return start_server("insecure")


@pytest.fixture
def tls_server(start_server, server_tls_context):
    return start_server("tls", ssl_context=server_tls_context)


# --- a small NBD test client --------------------------------------------------------------


class NbdTestClient:
    """Speaks the NBD wire by hand so that tests can check every byte the server sends."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def close(self):
        self.sock.close()

    def recv_exactly(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            piece = self.sock.recv(count - len(data))
            if not piece:
                raise EOFError(f"server closed after {len(data)} of {count} bytes")
            data += piece
        return bytes(data)

    def is_closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except ssl.SSLError:
            return True

    def greet(self, client_flags: int = 1) -> bytes:
        greeting = self.recv_exactly(18)
        self.sock.sendall(struct.pack(">I", client_flags))
        return greeting

    def send_option(self, option: int, payload: bytes = b"") -> None:
        self.sock.sendall(b"IHAVEOPT" + struct.pack(">II", option, len(payload)) + payload)

    def read_option_reply(self) -> tuple[int, int, bytes]:
        magic, option, reply, length = struct.unpack(">QIII", self.recv_exactly(20))
        assert magic == 0x0003E889045565A9
        return option, reply, self.recv_exactly(length)

    def ask(self, option: int, payload: bytes = b"") -> int:
        self.send_option(option, payload)
        replied_option, reply, data = self.read_option_reply()
        assert replied_option == option
        assert data == b""
        return reply

    def start_tls(self, context: ssl.SSLContext) -> None:
        assert self.ask(NBD_OPT_STARTTLS) == NBD_REP_ACK
        self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")

    def export_name(self, name: str) -> tuple[int, int, bytes]:
        self.send_option(NBD_OPT_EXPORT_NAME, name.encode())
        size, flags = struct.unpack(">QH", self.recv_exactly(10))
        return size, flags, self.recv_exactly(124)

    def request(self, command: int, handle: int, offset: int, length: int, payload: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">IIQQI", 0x25609513, command, handle, offset, length) + payload)

    def read_reply(self) -> tuple[int, int]:
        magic, error, handle = struct.unpack(">IIQ", self.recv_exactly(16))
        assert magic == 0x67446698
        return error, handle

    def read(self, offset: int, length: int, handle: int = 7) -> bytes:
        self.request(NBD_CMD_READ, handle, offset, length)
        assert self.read_reply() == (0, handle)
        return self.recv_exactly(length)


@pytest.fixture
def connect():
    clients = []

    def connect(server: NbdServer) -> NbdTestClient:
        client = NbdTestClient(server.port)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def transmitting(insecure_server, connect):
    """A client past the handshake, in the transmission phase of EXPORT_NAME."""
    client = connect(insecure_server)
    client.greet()
    client.export_name(EXPORT_NAME)
    return client


def _threads_of(server: NbdServer) -> list[threading.Thread]:
    """The accept thread and every connection thread of this server that is alive now."""
    return [t for t in (server._accept_thread, *server._connections.values()) if t.is_alive()]


# --- handshake ---------------------------------------------------------------------------


def test_the_greeting_is_fixed_newstyle_without_no_zeroes(insecure_server, connect):
    client = connect(insecure_server)
    assert client.greet() == b"NBDMAGIC" + b"IHAVEOPT" + b"\x00\x01"


def test_the_export_name_reply_is_size_read_only_flags_and_124_zeros(insecure_server, connect, resolver):
    client = connect(insecure_server)
    client.greet()
    size, flags, padding = client.export_name(EXPORT_NAME)
    assert size == DISK_SIZE
    assert flags == 0x0003
    assert padding == bytes(124)
    assert resolver.names == [EXPORT_NAME]
    # Nothing more is sent: the next bytes are the reply to the first request.
    assert client.read(0, 512) == DISK[:512]


@pytest.mark.parametrize(
    "option",
    [NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_STRUCTURED_REPLY, NBD_OPT_LIST_META_CONTEXT,
     NBD_OPT_SET_META_CONTEXT, 4, 42],
)
def test_options_xapi_nbd_does_not_know_are_unsupported_and_haggling_goes_on(
    insecure_server, connect, option
):
    client = connect(insecure_server)
    client.greet()
    assert client.ask(option, b"\x00\x00\x00\x00\x00\x00") == NBD_REP_ERR_UNSUP
    assert client.export_name(EXPORT_NAME)[0] == DISK_SIZE


def test_list_is_refused_by_policy(insecure_server, connect):
    client = connect(insecure_server)
    client.greet()
    assert client.ask(NBD_OPT_LIST) == NBD_REP_ERR_POLICY


def test_abort_is_acknowledged_then_the_connection_closes(insecure_server, connect):
    client = connect(insecure_server)
    client.greet()
    assert client.ask(NBD_OPT_ABORT) == NBD_REP_ACK
    assert client.is_closed_by_server()


def test_starttls_in_cleartext_mode_is_refused_by_policy(insecure_server, connect):
    client = connect(insecure_server)
    client.greet()
    assert client.ask(NBD_OPT_STARTTLS) == NBD_REP_ERR_POLICY
    assert client.export_name(EXPORT_NAME)[0] == DISK_SIZE


def test_an_unknown_export_name_closes_the_connection(insecure_server, connect, resolver):
    client = connect(insecure_server)
    client.greet()
    client.send_option(NBD_OPT_EXPORT_NAME, f"/{VDI_UUID}?session_id=OpaqueRef:expired".encode())
    assert client.is_closed_by_server()
    assert resolver.names == [f"/{VDI_UUID}?session_id=OpaqueRef:expired"]


def test_a_bad_option_magic_closes_the_connection(insecure_server, connect):
    client = connect(insecure_server)
    client.greet()
    client.sock.sendall(b"IHAVEOPX" + struct.pack(">II", NBD_OPT_LIST, 0))
    assert client.is_closed_by_server()


# --- transmission ------------------------------------------------------------------------


def test_reads_return_the_disk_bytes(transmitting):
    assert transmitting.read(0, 4096) == DISK[:4096]
    assert transmitting.read(10 * MiB, 2 * MiB, handle=8) == DISK[10 * MiB : 12 * MiB]
    assert transmitting.read(DISK_SIZE - 512, 512, handle=9) == DISK[-512:]
    assert transmitting.read(30 * MiB, 32 * MiB, handle=10) == DISK[30 * MiB : 62 * MiB]


@pytest.mark.parametrize("offset, length", [(1, 512), (512, 100), (0, 513)])
def test_an_unaligned_read_gets_einval_and_the_connection_stays_usable(transmitting, offset, length):
    transmitting.request(NBD_CMD_READ, 11, offset, length)
    assert transmitting.read_reply() == (EINVAL, 11)
    assert transmitting.read(4096, 512) == DISK[4096:4608]


@pytest.mark.parametrize("offset, length", [(DISK_SIZE, 512), (DISK_SIZE - 512, 1024), (0, 32 * MiB + 512)])
def test_a_read_past_the_end_or_above_32_mib_gets_einval(transmitting, offset, length):
    transmitting.request(NBD_CMD_READ, 12, offset, length)
    assert transmitting.read_reply() == (EINVAL, 12)
    assert transmitting.read(0, 512) == DISK[:512]


def test_a_zero_length_read_gets_an_empty_ok_like_xapi_nbd(transmitting):
    transmitting.request(NBD_CMD_READ, 17, 4096, 0)
    assert transmitting.read_reply() == (0, 17)
    assert transmitting.read(0, 512) == DISK[:512]


def test_a_write_gets_eperm_and_its_payload_is_skipped(transmitting):
    transmitting.request(NBD_CMD_WRITE, 13, 0, 4096, payload=b"\xff" * 4096)
    assert transmitting.read_reply() == (EPERM, 13)
    assert transmitting.read(0, 4096) == DISK[:4096]


def test_a_write_with_fua_gets_einval_and_its_payload_is_skipped(transmitting):
    transmitting.request(NBD_CMD_WRITE | NBD_CMD_FLAG_FUA, 18, 0, 1024, payload=b"\xff" * 1024)
    assert transmitting.read_reply() == (EINVAL, 18)
    assert transmitting.read(0, 512) == DISK[:512]


@pytest.mark.parametrize(
    "command", [NBD_CMD_FLUSH, NBD_CMD_TRIM, NBD_CMD_CACHE, NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS, 99]
)
def test_every_other_command_including_block_status_gets_einval(transmitting, command):
    transmitting.request(command, 14, 0, 4096)
    assert transmitting.read_reply() == (EINVAL, 14)
    assert transmitting.read(0, 512) == DISK[:512]


def test_a_read_with_a_command_flag_gets_einval_like_xapi_nbd(transmitting):
    transmitting.request(NBD_CMD_READ | NBD_CMD_FLAG_FUA, 15, 0, 512)
    assert transmitting.read_reply() == (EINVAL, 15)


def test_disc_closes_the_connection_and_the_export(transmitting, resolver):
    transmitting.request(NBD_CMD_DISC, 16, 0, 0)
    assert transmitting.is_closed_by_server()
    assert resolver.exports[0].closed.wait(5)


def test_the_export_is_closed_when_the_client_just_leaves(transmitting, resolver):
    transmitting.close()
    assert resolver.exports[0].closed.wait(5)


def test_a_failing_disk_read_drops_the_connection_after_the_ok_header(start_server, connect):
    class FailingExport(BytesExport):
        def read(self, offset, length):
            raise OSError("simulated I/O error")

    exports = []

    def resolve(name):
        exports.append(FailingExport(DISK))
        return exports[-1]

    client = connect(start_server("insecure", resolve=resolve))
    client.greet()
    client.export_name(EXPORT_NAME)
    client.request(NBD_CMD_READ, 19, 0, 4096)
    assert client.read_reply() == (0, 19)
    assert client.is_closed_by_server()
    assert exports[0].closed.wait(5)


def test_bytes_served_are_reported(start_server, connect):
    served = []
    server = start_server("insecure", on_bytes=served.append)
    client = connect(server)
    client.greet()
    client.export_name(EXPORT_NAME)
    client.read(0, 3 * MiB)
    client.request(NBD_CMD_READ, 1, 1, 512)  # refused, so not counted
    client.read_reply()
    assert sum(served) == 3 * MiB


# --- modes and lifecycle -----------------------------------------------------------------


def test_tls_mode_answers_tls_required_until_starttls(tls_server, connect, client_tls_context):
    client = connect(tls_server)
    assert client.greet() == b"NBDMAGIC" + b"IHAVEOPT" + b"\x00\x01"
    assert client.ask(NBD_OPT_GO) == NBD_REP_ERR_TLS_REQD
    assert client.ask(NBD_OPT_LIST) == NBD_REP_ERR_TLS_REQD
    client.start_tls(client_tls_context)
    assert client.ask(NBD_OPT_GO) == NBD_REP_ERR_UNSUP
    assert client.ask(NBD_OPT_LIST) == NBD_REP_ERR_POLICY
    assert client.ask(NBD_OPT_STARTTLS) == NBD_REP_ERR_INVALID
    size, flags, padding = client.export_name(EXPORT_NAME)
    assert (size, flags, padding) == (DISK_SIZE, 0x0003, bytes(124))
    assert client.read(33 * MiB, 4 * MiB) == DISK[33 * MiB : 37 * MiB]


@pytest.mark.parametrize("option", [NBD_OPT_EXPORT_NAME, NBD_OPT_ABORT])
def test_tls_mode_hangs_up_on_export_name_or_abort_in_cleartext(tls_server, connect, resolver, option):
    client = connect(tls_server)
    client.greet()
    client.send_option(option, EXPORT_NAME.encode() if option == NBD_OPT_EXPORT_NAME else b"")
    assert client.is_closed_by_server()
    assert resolver.names == []


def test_tls_mode_hangs_up_when_the_client_does_not_start_tls_after_the_ack(tls_server, connect, resolver):
    client = connect(tls_server)
    client.greet()
    assert client.ask(NBD_OPT_STARTTLS) == NBD_REP_ACK
    client.send_option(NBD_OPT_EXPORT_NAME, EXPORT_NAME.encode())
    assert client.is_closed_by_server()
    assert resolver.names == []


def test_tls_mode_hangs_up_on_a_client_without_fixed_newstyle(tls_server, connect):
    client = connect(tls_server)
    client.greet(client_flags=0)
    assert client.is_closed_by_server()


def assert_reset_before_greeting(server: NbdServer) -> None:
    # The reset can beat connect() back to the client, or come on the first read.
    with pytest.raises((ConnectionResetError, EOFError)):
        client = NbdTestClient(server.port)
        try:
            client.recv_exactly(1)
        finally:
            client.close()


def test_refuse_mode_resets_the_connection_before_any_greeting(start_server, resolver):
    server = start_server("refuse")
    assert_reset_before_greeting(server)
    assert resolver.names == []


def test_connections_above_the_limit_are_reset(start_server, connect):
    server = start_server("insecure", max_connections=1)
    first = connect(server)
    first.greet()
    assert_reset_before_greeting(server)
    assert first.ask(NBD_OPT_LIST) == NBD_REP_ERR_POLICY


def test_stop_ends_open_connections_and_leaves_no_threads(tls_server, connect, client_tls_context, resolver):
    in_handshake = connect(tls_server)
    in_handshake.greet()
    in_transmission = connect(tls_server)
    in_transmission.greet()
    in_transmission.start_tls(client_tls_context)
    in_transmission.export_name(EXPORT_NAME)
    in_transmission.read(0, 512)
    threads = _threads_of(tls_server)
    assert len(threads) == 3
    tls_server.stop()
    assert in_handshake.is_closed_by_server()
    assert in_transmission.is_closed_by_server()
    assert not any(thread.is_alive() for thread in threads)
    assert resolver.exports[0].closed.is_set()
    with pytest.raises(OSError):
        NbdTestClient(tls_server.port)


# --- real clients ------------------------------------------------------------------------


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (needed in CI)")
        pytest.skip(f"{name} is not installed")
    return path


def nbd_uri(scheme: str, server: NbdServer, name: str = EXPORT_NAME, query: str = "") -> str:
    # The URI path after its first "/" is the export name; "?" and ":" must be escaped.
    uri = f"{scheme}://127.0.0.1:{server.port}/{urllib.parse.quote(name, safe='/')}"
    return f"{uri}?{query}" if query else uri


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def sha256_of(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def test_nbdcopy_reads_the_whole_export_over_cleartext(insecure_server, resolver, tmp_path):
    nbdcopy = require_tool("nbdcopy")
    out = tmp_path / "out.raw"
    result = run_tool(nbdcopy, nbd_uri("nbd", insecure_server), str(out))
    assert result.returncode == 0, result.stderr
    assert resolver.names == [EXPORT_NAME]
    assert sha256_of(out) == DISK_SHA256


def test_nbdcopy_reads_the_whole_export_over_tls(tls_server, certificates, tmp_path):
    nbdcopy = require_tool("nbdcopy")
    out = tmp_path / "out.raw"
    uri = nbd_uri("nbds", tls_server, query=f"tls-certificates={certificates['client_dir']}")
    result = run_tool(nbdcopy, uri, str(out))
    assert result.returncode == 0, result.stderr
    assert sha256_of(out) == DISK_SHA256


def test_nbdcopy_without_tls_is_told_tls_is_required(tls_server, resolver, tmp_path):
    nbdcopy = require_tool("nbdcopy")
    result = run_tool(nbdcopy, nbd_uri("nbd", tls_server), str(tmp_path / "out.raw"))
    assert result.returncode != 0
    assert "TLS" in result.stderr
    assert resolver.names == []


def test_nbdinfo_gets_its_abort_answered_and_reports_the_size(insecure_server):
    nbdinfo = require_tool("nbdinfo")
    result = run_tool(nbdinfo, "--size", nbd_uri("nbd", insecure_server))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(DISK_SIZE)


def test_qemu_img_7_2_cannot_read_from_xapi_nbd_because_list_is_denied(insecure_server, resolver, tmp_path):
    """QEMU falls back from GO to EXPORT_NAME only after NBD_OPT_LIST succeeds or is
    unsupported; xapi-nbd (no export offer) answers LIST with ERR_POLICY, which QEMU 7.2
    treats as fatal. So qemu-img is no client for a real host, and must not be one here."""
    qemu_img = require_tool("qemu-img")
    out = tmp_path / "out.raw"
    uri = f"nbd://127.0.0.1:{insecure_server.port}/disk"
    result = run_tool(qemu_img, "convert", "-f", "raw", uri, "-O", "raw", str(out))
    assert result.returncode != 0
    assert "Denied by server for option 3 (list)" in result.stderr
    assert resolver.names == []
