"""NBD servers for the client tests: nbdkit (an independent, full server) and a tiny
in-test server that behaves like xapi-nbd (EXPORT_NAME only, GO unsupported, read-only)."""
import datetime
import os
import select
import socket
import ssl
import struct
import subprocess
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_self_signed_cert(directory, common_name="xcp-host-1"):
    """A self-signed host certificate as XenServer hosts have; written in nbdkit's
    layout (ca-cert.pem, server-cert.pem, server-key.pem). Returns the PEM text."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "server-cert.pem").write_bytes(pem)
    (directory / "ca-cert.pem").write_bytes(pem)
    key_path = directory / "server-key.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return pem.decode()


class Nbdkit:
    """nbdkit serving a file on 127.0.0.1 until stop()."""

    def __init__(self, path, tmp_path, tls_dir=None):
        self.port = free_port()
        pidfile = tmp_path / f"nbdkit-{self.port}.pid"
        args = ["nbdkit", "-f", "--exit-with-parent", "-r", "-i", "127.0.0.1",
                "-p", str(self.port), "-P", str(pidfile)]
        if tls_dir is not None:
            args += ["--tls=require", f"--tls-certificates={tls_dir}"]
        self.process = subprocess.Popen(args + ["file", str(path)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not pidfile.exists() or not pidfile.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("nbdkit did not start: "
                                   + self.process.stderr.read().decode(errors="replace"))
            time.sleep(0.02)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()


class XapiNbdLikeServer:
    """Answers NBD_OPT_GO / INFO with ERR_UNSUP, finishes only on EXPORT_NAME, optional
    STARTTLS, NBD_CMD_READ (512-aligned) and DISC only. Replies to a batch of pipelined
    requests in reverse order, and records how many requests were in flight at most."""

    def __init__(self, disk: bytes, export_name: str, tls_dir=None):
        self.disk = disk
        self.export_name = export_name.encode()
        self.tls = None
        if tls_dir is not None:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(tls_dir / "server-cert.pem", tls_dir / "server-key.pem")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)  # so stop() is noticed promptly
        self.port = self.listener.getsockname()[1]
        self.max_in_flight = 0
        self.options_seen = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self.listener.close()
        self._thread.join(10)

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(10)
            try:
                conn = self._session(conn)
            except (OSError, ConnectionError, ssl.SSLError, struct.error):
                pass
            finally:
                conn.close()

    @staticmethod
    def _recv(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        return data

    def _reply_option(self, conn, option, reply, data=b""):
        conn.sendall(struct.pack(">QIII", 0x3E889045565A9, option, reply, len(data)) + data)

    def _session(self, conn):
        conn.sendall(struct.pack(">QQH", 0x4E42444D41474943, 0x49484156454F5054, 1))
        self._recv(conn, 4)  # client flags
        while True:
            _, option, length = struct.unpack(">QII", self._recv(conn, 16))
            payload = self._recv(conn, length)
            self.options_seen.append(option)
            if option == 5 and self.tls:  # STARTTLS
                self._reply_option(conn, option, 1)
                conn = self.tls.wrap_socket(conn, server_side=True)
            elif self.tls and not isinstance(conn, ssl.SSLSocket):
                self._reply_option(conn, option, (1 << 31) | 5)  # ERR_TLS_REQD
            elif option == 2:  # ABORT
                self._reply_option(conn, option, 1)
                return conn
            elif option == 1:  # EXPORT_NAME
                if payload != self.export_name:
                    return conn  # xapi-nbd drops the connection
                conn.sendall(struct.pack(">QH", len(self.disk), 3) + bytes(124))
                self._transmission(conn)
                return conn
            else:
                self._reply_option(conn, option, (1 << 31) | 1)  # ERR_UNSUP

    def _transmission(self, conn):
        while True:
            batch = [self._recv(conn, 28)]
            while len(batch) < 8 and (
                    (isinstance(conn, ssl.SSLSocket) and conn.pending())
                    or select.select([conn], [], [], 0.05)[0]):
                batch.append(self._recv(conn, 28))
            self.max_in_flight = max(self.max_in_flight, len(batch))
            for request in reversed(batch):
                _, _, command, handle, offset, length = struct.unpack(">IHHQQI", request)
                if command == 2:  # DISC
                    return
                if command != 0 or offset % 512 or length % 512 \
                        or offset + length > len(self.disk):
                    conn.sendall(struct.pack(">IIQ", 0x67446698, 22, handle))  # EINVAL
                    continue
                conn.sendall(struct.pack(">IIQ", 0x67446698, 0, handle)
                             + self.disk[offset : offset + length])
