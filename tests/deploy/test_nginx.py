"""deploy/nginx/sesamweb.conf, run by a real nginx on free ports in front of a recording upstream:
plain HTTP goes to HTTPS, TLS ends at nginx, and what reaches the console carries what it
relies on (X-Forwarded-For appended, X-Forwarded-Proto https, websocket Upgrade, the Host)."""
import datetime
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fixtures.services import free_port

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "deploy" / "nginx" / "sesamweb.conf"
HOST = "console.example.org"


def nginx_binary():
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if not found:
        reason = "nginx is not installed (Debian: apt-get install nginx-light)"
        pytest.fail(reason) if os.environ.get("CI", "").lower() == "true" else pytest.skip(reason)
    return found


def self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(key, hashes.SHA256()))
    (directory / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    for name in ("fullchain.pem", "privkey.pem"):
        (directory / name).chmod(0o644)      # nginx's workers run as nobody under a root master


class Recorder(http.server.BaseHTTPRequestHandler):
    """Stands in for daphne: answers with the headers it was sent."""
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()} | {"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy(tmp_path):
    binary = nginx_binary()
    tmp_path.chmod(0o755)
    self_signed(tmp_path)
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    http_port, https_port = free_port(), free_port()
    site = SITE.read_text()
    site = site.replace("/etc/ssl/sesamweb/", f"{tmp_path}/").replace("127.0.0.1:8000", f"127.0.0.1:{upstream.server_port}")
    site = re.sub(r"listen \[::\]:\d+[^;]*;\n", "", site)        # no IPv6 needed here
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    (tmp_path / "site.conf").write_text(site)
    temp = tmp_path / "temp"
    temp.mkdir(mode=0o777)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
        f"  include {tmp_path}/site.conf;\n}}\n")
    check = subprocess.run([binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "nginx did not start listening"
            time.sleep(0.1)
    yield {"http": http_port, "https": https_port, "ca": tmp_path / "fullchain.pem"}
    process.terminate()
    process.wait(timeout=30)
    upstream.shutdown()


def test_the_shipped_config_passes_nginx_t_and_forwards_what_the_console_needs(proxy):
    context = ssl.create_default_context(cafile=str(proxy["ca"]))
    context.check_hostname = False     # the certificate names console.example.org, we dial 127.0.0.1
    request = urllib.request.Request(f"https://127.0.0.1:{proxy['https']}/live/?x=1",
                                     headers={"Host": HOST, "X-Forwarded-For": "203.0.113.9",
                                              "Upgrade": "websocket", "Connection": "Upgrade"})
    seen = json.load(urllib.request.urlopen(request, context=context, timeout=30))
    assert seen["path"] == "/live/?x=1" and seen["host"] == HOST
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"    # appended: the console trusts the last hop
    assert seen["upgrade"] == "websocket" and seen["connection"] == "upgrade"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    with pytest.raises(urllib.error.HTTPError) as moved:
        urllib.request.build_opener(NoRedirect).open(
            urllib.request.Request(f"http://127.0.0.1:{proxy['http']}/jobs/", headers={"Host": HOST}), timeout=30)
    assert moved.value.code == 301 and moved.value.headers["Location"] == f"https://{HOST}/jobs/"
