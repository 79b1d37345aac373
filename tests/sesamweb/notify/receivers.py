"""Real receivers on loopback for notification tests: an SMTP server (aiosmtpd), syslog
servers over UDP, TCP and TLS that parse RFC 5424, and a small HTTP server standing in
for webhook receivers and SMS gateways. Each listens on a free port and records what it
got; tests wait for it with deadlines (wait_for), never with sleeps."""
import datetime
import http.server
import ipaddress
import re
import socket
import socketserver
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout=15.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


class SelfSignedCert:
    """A certificate for 127.0.0.1 / localhost and its key, as PEM files in `directory`."""

    def __init__(self, directory):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.cert_path = directory / "cert.pem"
        self.key_path = directory / "key.pem"
        self.cert_path.write_text(self.pem)
        self.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))

    def server_context(self):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


# --- SMTP ------------------------------------------------------------------------------
class SmtpReceiver:
    """aiosmtpd on a free port; `messages` holds (mail_from, rcpt_tos, raw bytes)."""

    def __init__(self, *, cert=None, implicit_tls=False, login=None):
        self.messages, self.logins = [], []
        self.port = free_port()
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == login
            receiver.logins.append((mechanism, ok))
            return AuthResult(success=ok, handled=False)

        options = {}
        if cert and implicit_tls:
            options["ssl_context"] = cert.server_context()
        elif cert:
            options.update(tls_context=cert.server_context(), require_starttls=True)
        if login:
            options.update(authenticator=authenticate, auth_required=True, auth_require_tls=bool(cert))
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


# --- syslog ----------------------------------------------------------------------------
_SD_ELEMENT = re.compile(r'\[([^ \]]+)((?: [^= ]+="(?:[^"\\]|\\.)*")*)\]')
_SD_PARAM = re.compile(r' ([^= ]+)="((?:[^"\\]|\\.)*)"')


def parse_rfc5424(line: bytes) -> dict:
    """A strict-enough RFC 5424 parser: header fields, structured data, message."""
    text = line.decode("utf-8")
    match = re.match(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ", text)
    assert match, f"not RFC 5424: {text!r}"
    pri, timestamp, hostname, app, procid, msgid = match.groups()
    rest = text[match.end():]
    sd = {}
    if rest.startswith("-"):
        rest = rest[2:]
    else:
        while rest.startswith("["):
            element = _SD_ELEMENT.match(rest)
            assert element, f"bad structured data: {rest!r}"
            sd[element.group(1)] = {k: re.sub(r"\\(.)", r"\1", v) for k, v in _SD_PARAM.findall(element.group(2))}
            rest = rest[element.end():]
        rest = rest[1:] if rest.startswith(" ") else rest
    datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))  # a valid timestamp
    return {"facility": int(pri) // 8, "severity": int(pri) % 8, "timestamp": timestamp, "hostname": hostname,
            "app_name": app, "procid": procid, "msgid": msgid, "sd": sd, "msg": rest}


class SyslogReceiver:
    """protocol "udp" (one datagram per message), "tcp" or "tls" (RFC 6587 octet counting)."""

    def __init__(self, protocol, cert=None):
        self.protocol, self.records, self.errors = protocol, [], []
        receiver = self

        class DatagramHandler(socketserver.BaseRequestHandler):
            def handle(self):
                receiver.records.append(parse_rfc5424(self.request[0]))

        class StreamHandler(socketserver.StreamRequestHandler):
            def handle(self):
                try:
                    while True:
                        length = b""
                        while not length.endswith(b" "):
                            byte = self.rfile.read(1)
                            if not byte:
                                return
                            length += byte
                        receiver.records.append(parse_rfc5424(self.rfile.read(int(length))))
                except Exception as exc:  # reported to the test
                    receiver.errors.append(exc)

        if protocol == "udp":
            self.server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), DatagramHandler)
        else:
            context = cert.server_context() if protocol == "tls" else None

            class Server(socketserver.ThreadingTCPServer):
                daemon_threads = True
                allow_reuse_address = True

                def get_request(self):
                    sock, address = super().get_request()
                    return (context.wrap_socket(sock, server_side=True) if context else sock), address

            self.server = Server(("127.0.0.1", 0), StreamHandler)
        self.port = self.server.server_address[1]

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# --- HTTP (webhooks, SMS gateways) -----------------------------------------------------
class HttpReceiver:
    """Records each request (method, path, headers, body); `answer(request)` returns the
    status to reply with (default 200)."""

    def __init__(self, answer=None):
        self.requests = []
        self.answer = answer or (lambda request: 200)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = {"method": self.command, "path": self.path, "headers": dict(self.headers),
                           "body": self.rfile.read(length) if length else b""}
                status = receiver.answer(request)
                request["status"] = status
                receiver.requests.append(request)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def ok(self):
        return [r for r in self.requests if r["status"] < 300]
