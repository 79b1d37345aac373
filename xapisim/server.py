"""One HTTP(S) server per host address: XML-RPC on POST / and /RPC2, the transfer handlers,
and the /_sim/ control API (test-only; bound to loopback like everything else)."""

import http.server
import socket
import threading
import urllib.parse

from .api.dispatch import handle_xmlrpc

MAX_XMLRPC_BODY = 64 << 20


class HostServer:
    def __init__(self, sim, host: str):
        self.sim = sim
        self.host = host
        address = sim.db.get("host", host)["address"]
        self.httpd = _HTTPServer((address, sim.config.port), _Handler, sim=sim, host=host,
                                 tls_context=sim.certificates[host][0] if sim.config.tls else None)
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="xapisim-http-%s" % self.httpd.server_address[0], daemon=True)
        self.thread.start()

    def refuse_new_connections(self) -> None:
        """Take the listener out of the listening state now: new clients get ECONNREFUSED
        (the full stop may run a moment later, after a control reply has gone out)."""
        try:
            self.httpd.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stop(self) -> None:
        """Close the listener and every open connection, so the address refuses clients."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.close_connections()
        if self.thread:
            self.thread.join(timeout=5)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, handler, *, sim, host, tls_context):
        self.sim = sim
        self.host = host
        self.tls_context = tls_context
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self):
        conn, addr = self.socket.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls_context is not None:
            # Handshake in the handler thread, so a slow client cannot block accept().
            conn = self.tls_context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        with self._conn_lock:
            self._connections.add(conn)
        return conn, addr

    def shutdown_request(self, request):
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # Clients that hang up mid-transfer are normal (and injected faults cause them).
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xapi/24.39"
    sys_version = ""

    def log_message(self, format, *args):
        pass

    @property
    def sim(self):
        return self.server.sim

    @property
    def host(self) -> str:
        return self.server.host

    def setup(self):
        super().setup()
        if self.server.tls_context is not None:
            self.connection.do_handshake()

    def parsed(self) -> tuple[str, dict]:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        return url.path.rstrip("/") or "/", query

    def do_POST(self):
        path, query = self.parsed()
        if path in ("/", "/RPC2"):
            return self.serve_xmlrpc()
        if path.startswith("/_sim/"):
            from .control import handle_control
            return handle_control(self, path[len("/_sim/"):])
        self.send_plain(404, "Not found")

    def do_GET(self):
        from . import transfers
        path, query = self.parsed()
        route = {"/export": transfers.export_vm, "/export_raw_vdi": transfers.export_raw_vdi,
                 "/export_metadata": transfers.export_metadata}.get(path)
        if route:
            return route(self, query)
        if path.startswith("/_sim/"):
            from .control import handle_control
            return handle_control(self, path[len("/_sim/"):])
        self.send_plain(404, "Not found")

    def do_PUT(self):
        from . import transfers
        path, query = self.parsed()
        route = {"/import": transfers.import_vm, "/import_raw_vdi": transfers.import_raw_vdi}.get(path)
        if route:
            return route(self, query)
        self.send_plain(404, "Not found")

    def serve_xmlrpc(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_XMLRPC_BODY:
            return self.send_plain(413, "Request too large")
        body = self.rfile.read(length)
        try:
            reply = handle_xmlrpc(self.sim, self.host, body)
        except ValueError:
            # xapi answers a request it cannot parse with HTTP 500 and an HTML body.
            return self.send_plain(500, "<html><body><h1>HTTP 500 internal server error</h1>"
                                        "An unexpected error occurred; please wait a while and try again.</body></html>",
                                   "text/html")
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def send_plain(self, code: int, text: str, content_type: str = "text/plain", headers: dict | None = None):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
