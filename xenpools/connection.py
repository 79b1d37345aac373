"""The one place that talks to a pool: XenAPI sessions, transfer URLs and HTTP transfers.

Everything else (inventory sync, the event follower, the backup engine) goes through
PoolConnection. It handles:

- addresses: "host", "host:port", "http://h:p", "https://h:p" (default https, port 443);
- TLS: certificates are pinned by SHA-256 fingerprint per host address. The rule:
  1. the master's certificate is trusted on first use only when an administrator confirms
     its fingerprint (the add-pool wizard, or `add_pool --trust-fingerprint`);
  2. member certificates are learnt over the verified master session
     (`host.get_server_certificate`) during an inventory sync and pinned per address;
  3. a host with no pin of its own is accepted only if it presents a certificate whose
     fingerprint is already pinned for this pool (the very key the admin trusted, e.g. a
     pool-wide certificate);
  4. anything else is refused before the password is sent: PoolCertificateUnknown (no pin)
     or PoolCertificateChanged (a pin that no longer matches). A certificate is NEVER
     trusted because a redirect (HOST_IS_SLAVE, HTTP 302) or a failover pointed at its host;
- HOST_IS_SLAVE [master]: followed, and the new master is stored on the pool;
- master failover: on a transport error (never on a XenAPI error) the other hosts known from
  the last sync are tried in turn, accepting their HOST_IS_SLAVE redirection; a new session
  is opened on whichever host is master now (old sessions die with the old master);
- HTTP transfers with http.client: session_id in the query, headers sent before the body so
  a 302 is followed with the same method and the untouched body (requests would turn a
  redirected PUT into a GET), same TLS pinning; wait_task for the task that drives them.

A PoolConnection is thread-confined: open one per thread.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import select
import socket
import ssl
import time
import xmlrpc.client
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit
from xml.parsers.expat import ExpatError

import XenAPI

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"https": 443, "http": 80}
CONNECT_TIMEOUT = 15          # seconds for a TCP connect (certificate fetch, transfers)
RPC_TIMEOUT = 90              # seconds for one XML-RPC exchange (longer than an event.from wait)
MAX_REDIRECTS = 3             # HOST_IS_SLAVE hops before giving up


# --- errors an administrator can act on -----------------------------------------------------
class PoolError(Exception):
    """Base class: the message is meant to be shown to an administrator as is."""


class PoolUnreachable(PoolError):
    pass


class PoolConnectionLost(PoolUnreachable):
    """A logged-in session's connection broke mid-call (the master died, a network blip, an
    empty or cut reply). The call may or may not have run: callers retry on a new connection."""


class PoolAuthenticationFailed(PoolError):
    pass


class PoolCertificateError(PoolError):
    def __init__(self, message, *, address, fingerprint):
        super().__init__(message)
        self.address = address
        self.fingerprint = fingerprint


class PoolCertificateChanged(PoolCertificateError):
    def __init__(self, address, expected, actual):
        super().__init__(
            f"the TLS certificate of {address} has changed: expected fingerprint {expected}, got {actual}. "
            "If the host's certificate was replaced on purpose, confirm the new fingerprint in the pool's settings.",
            address=address, fingerprint=actual,
        )
        self.expected = expected


class PoolCertificateUnknown(PoolCertificateError):
    def __init__(self, address, fingerprint):
        super().__init__(
            f"the TLS certificate of {address} is not trusted yet; its SHA-256 fingerprint is {fingerprint}. "
            "Compare it with the host's certificate and confirm it to trust it.",
            address=address, fingerprint=fingerprint,
        )


class PoolTaskFailed(PoolError):
    def __init__(self, task_ref, error_info):
        self.task_ref = task_ref
        self.error_info = list(error_info or [])
        super().__init__(f"task failed: {' '.join(self.error_info) or 'no error given'}")


class PoolTimeout(PoolError):
    pass


# A host that dies mid-answer can leave an empty or cut XML body: a transport error too.
TRANSPORT_ERRORS = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError, ExpatError)


# --- addresses and certificates ---------------------------------------------------------------
@dataclass(frozen=True)
class Address:
    scheme: str
    host: str
    port: int

    def url(self, host: str | None = None) -> str:
        return f"{self.scheme}://{_bracket(host or self.host)}:{self.port}"


def _bracket(host):
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def parse_address(text: str) -> Address:
    """Parse "host", "host:port", "http://h:p" or "https://h:p" (default https:443)."""
    text = (text or "").strip()
    if not text:
        raise ValueError("enter the pool master's address")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"unsupported scheme {parts.scheme!r}: use https:// or http://")
    if not parts.hostname:
        raise ValueError(f"no host name in {text!r}")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError("give only the host and port, without a path")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"invalid port in {text!r}") from None
    return Address(scheme, parts.hostname, port)


def fingerprint_of(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def fingerprint_of_pem(pem: str) -> str:
    return fingerprint_of(ssl.PEM_cert_to_DER_cert(pem))


def normalise_fingerprint(text: str) -> str:
    hexdigits = "".join(c for c in (text or "").upper() if c in "0123456789ABCDEF")
    if len(hexdigits) != 64:
        raise ValueError("a SHA-256 fingerprint has 64 hexadecimal digits")
    return ":".join(hexdigits[i:i + 2] for i in range(0, 64, 2))


def _unverified_context():
    # Verification is done by pinning the fingerprint right after the handshake, not by a CA.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fetch_fingerprint(address: Address, host: str | None = None) -> str:
    """The SHA-256 fingerprint of the certificate a host presents (for trust on first use)."""
    host = host or address.host
    try:
        with socket.create_connection((host, address.port), timeout=CONNECT_TIMEOUT) as raw:
            with _unverified_context().wrap_socket(raw, server_hostname=host) as tls:
                return fingerprint_of(tls.getpeercert(binary_form=True))
    except OSError as exc:
        raise PoolUnreachable(_describe_os_error(host, address.port, exc)) from exc


def _describe_os_error(host, port, exc):
    if isinstance(exc, ssl.SSLError):
        hint = " (the host answers plain HTTP: use http://)" if exc.reason == "WRONG_VERSION_NUMBER" else ""
        return f"TLS handshake with {host}:{port} failed: {exc.reason or exc}{hint}"
    if isinstance(exc, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(exc, (socket.timeout, TimeoutError)):
        reason = "timed out"
    elif isinstance(exc, socket.gaierror):
        reason = "unknown host name"
    else:
        reason = exc.strerror or str(exc) or exc.__class__.__name__
    return f"cannot reach {host}:{port}: {reason}"


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS whose peer certificate must have a trusted fingerprint (checked before any byte
    of the request is sent).

    `pinned` is the fingerprint pinned for this very host (a mismatch means the certificate
    changed); `also_trusted` are the pool's other pinned fingerprints, accepted for a host that
    has no pin of its own yet (the same key material the admin already trusts, e.g. a
    pool-wide certificate)."""

    def __init__(self, host, port, *, pinned=None, also_trusted=(), timeout=RPC_TIMEOUT):
        super().__init__(host, port, timeout=timeout, context=_unverified_context())
        self.pinned = pinned
        self.also_trusted = frozenset(also_trusted)

    def connect(self):
        super().connect()
        actual = fingerprint_of(self.sock.getpeercert(binary_form=True))
        if self.pinned and actual != self.pinned:
            self.close()
            raise PoolCertificateChanged(f"{self.host}:{self.port}", self.pinned, actual)
        if not self.pinned and actual not in self.also_trusted:
            self.close()
            raise PoolCertificateUnknown(f"{self.host}:{self.port}", actual)


class _PinnedTransport(xmlrpc.client.Transport):
    """xmlrpc transport for XenAPI.Session over pinned HTTPS (keeps the connection alive)."""

    def __init__(self, pinned, also_trusted, timeout):
        super().__init__()
        self.pinned, self.also_trusted, self.timeout = pinned, also_trusted, timeout

    def make_connection(self, host):
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        hostname, _, port = chost.rpartition(":")
        self._connection = host, PinnedHTTPSConnection(hostname.strip("[]"), int(port), pinned=self.pinned,
                                                             also_trusted=self.also_trusted, timeout=self.timeout)
        return self._connection[1]


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout):
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host):
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


# --- sessions ----------------------------------------------------------------------------------
@dataclass
class ProbeResult:
    """What "Test connection" found."""

    master_address: str
    pool_uuid: str
    pool_name: str
    product_brand: str
    product_version: str
    ha_enabled: bool
    hosts: list = field(default_factory=list)        # [(name, address, is_master)]
    vm_count: int = 0
    fingerprint: str | None = None                   # of the master, for https
    redirected_from: str | None = None               # the member address that was entered

    @property
    def member_addresses(self):
        return [address for _name, address, _master in self.hosts if address]


class PoolConnection:
    """A logged-in XenAPI session on a pool's master, plus HTTP transfers to its hosts."""

    # (confirmed fingerprint, accept any) during PoolConnection.probe only: trust on first use.
    _allow_first_use = None

    def __init__(self, address: Address, username: str, password: str, fingerprints: dict | None = None,
                 candidates: list | None = None, *, pool=None, rpc_timeout: float = RPC_TIMEOUT):
        self.address = address
        self.rpc_timeout = rpc_timeout
        self.username = username
        self._password = password
        self.fingerprints = dict(fingerprints or {})
        self.candidates = list(candidates or [address.host])
        self.pool = pool
        self.session = None
        self.master_address = None
        self.redirected_from = None

    # construction -------------------------------------------------------------------------
    @classmethod
    def open(cls, pool, *, rpc_timeout: float = RPC_TIMEOUT) -> "PoolConnection":
        """Log in to the pool's master (following HOST_IS_SLAVE, failing over to the hosts known
        from the last sync) and store the master's address on the pool if it changed.

        rpc_timeout: seconds one XML-RPC call may take; a host that dies without closing its
        connections is noticed only then, so keep it just above the longest expected call."""
        address = Address(pool.scheme, pool.address, pool.port)
        connection = cls(address, pool.username, pool.get_password(), pool.fingerprints,
                         pool.candidate_addresses, pool=pool, rpc_timeout=rpc_timeout)
        connection.login()
        return connection

    @classmethod
    def probe(cls, address: str, username: str, password: str, *, fingerprint: str | None,
              accept_new_fingerprint: bool = False) -> ProbeResult:
        """Test a pool's address and credentials without saving anything.

        https: `fingerprint` is the one the admin confirmed (or None on first contact). Without
        it, PoolCertificateUnknown carries the fingerprint to confirm, unless
        accept_new_fingerprint (CLI --trust-fingerprint) trusts whatever the master presents.
        """
        parsed = parse_address(address)
        connection = cls(parsed, username, password)
        connection._allow_first_use = (fingerprint, accept_new_fingerprint)
        with connection:
            connection.login()
            return connection.describe()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def xenapi(self):
        """`conn.xenapi.VM.get_record(ref)`: every call goes through `call`, on whichever
        session is current, so a reference held across a master change keeps working."""
        return _Calls(self.call)

    def call(self, method: str, params: tuple):
        """One XenAPI call. HOST_IS_SLAVE (the master moved; xapi refuses before doing
        anything, so the call is safe to repeat) is followed to the new master and the call
        made again there; a broken connection becomes PoolConnectionLost, the one error the
        engine retries on (it never sees socket, HTTP or XML parser errors)."""
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                return self.session.xenapi_request(method, params)
            except XenAPI.Failure as failure:
                if failure.details[:1] != ["HOST_IS_SLAVE"] or len(failure.details) < 2:
                    raise
                logger.info("pool %s: the master moved from %s to %s; following it",
                            self.address.host, self.master_address, failure.details[1])
                self._follow_master(failure.details[1])
            except TRANSPORT_ERRORS as exc:
                raise PoolConnectionLost(
                    f"lost the connection to {self.master_address} during {method}: {exc or exc.__class__.__name__}"
                ) from exc
        raise PoolError(f"too many HOST_IS_SLAVE redirections during {method}")

    def _follow_master(self, host):
        self._discard_session()
        self.candidates = [host, *[c for c in self.candidates if c != host]]
        self.login()

    # login, redirection, failover -----------------------------------------------------------
    def login(self):
        errors = []
        for candidate in self.candidates:
            try:
                self._login_following_redirects(candidate)
                break
            except PoolUnreachable as exc:      # transport error: try the next known host
                errors.append(str(exc))
                logger.info("pool %s: %s; trying another host", self.address.host, exc)
        else:
            raise PoolUnreachable("; ".join(errors) if len(errors) > 1 else errors[0])
        if self.pool is not None:
            self.pool.remember_master(self.master_address)

    def reconnect(self):
        """Open a new session after a transport error (the master may have changed)."""
        self._discard_session()
        if self.master_address:
            self.candidates = [self.master_address, *[c for c in self.candidates if c != self.master_address]]
        self.login()

    def _login_following_redirects(self, host):
        for _hop in range(MAX_REDIRECTS + 1):
            session = XenAPI.Session(self.address.url(host), transport=self._transport_for(host))
            try:
                session.xenapi.login_with_password(self.username, self._password, "1.0", "sesamweb")
            except XenAPI.Failure as failure:
                code, params = failure.details[0], failure.details[1:]
                if code == "HOST_IS_SLAVE" and params:
                    logger.info("%s is a pool member; the master is %s", host, params[0])
                    self.redirected_from = self.redirected_from or host
                    host = params[0]
                    continue
                if code == "SESSION_AUTHENTICATION_FAILED":
                    raise PoolAuthenticationFailed(
                        f"{host} refused the user name or password for {self.username!r}"
                    ) from None
                raise PoolError(f"{host} refused the login: {' '.join(failure.details)}") from None
            except PoolError:
                raise
            except TRANSPORT_ERRORS as exc:
                raise PoolUnreachable(_describe_os_error(host, self.address.port, exc)
                                      if isinstance(exc, OSError) else f"cannot talk to {host}:{self.address.port}: {exc}") from exc
            except xmlrpc.client.Fault as fault:
                raise PoolError(f"{host} answered with an XML-RPC fault: {fault.faultString}") from None
            self.session = session
            self.master_address = host
            return
        raise PoolError(f"too many HOST_IS_SLAVE redirections (last: {host})")

    def _transport_for(self, host):
        if self.address.scheme == "http":
            return _TimeoutTransport(self.rpc_timeout)
        return _PinnedTransport(*self._trust_for(host), self.rpc_timeout)

    def _trust_for(self, host):
        """(fingerprint pinned for `host`, other fingerprints accepted for an unpinned host).

        On a first-use probe the fingerprint the admin confirmed is accepted for whichever host
        presents it; `accept_new_fingerprint` without one (CLI) pins what each host presents."""
        pinned = self.fingerprints.get(host)
        trusted = self._pool_fingerprints()
        if self._allow_first_use is not None and not pinned:
            confirmed, accept_any = self._allow_first_use
            if confirmed:
                trusted.add(normalise_fingerprint(confirmed))
            elif accept_any:
                pinned = self.fingerprints[host] = fetch_fingerprint(self.address, host)
        return pinned, trusted

    def _pool_fingerprints(self):
        return {fp for fp in self.fingerprints.values() if fp}

    def _master_fingerprint(self):
        """The fingerprint of the master just logged in to (checked by the transport)."""
        if self.address.scheme != "https":
            return None
        if not self.fingerprints.get(self.master_address):
            presented = fetch_fingerprint(self.address, self.master_address)
            pinned, trusted = self._trust_for(self.master_address)
            if presented != pinned and presented not in trusted:
                raise PoolCertificateChanged(self.master_address, pinned or "the confirmed one", presented)
            self.fingerprints[self.master_address] = presented
        return self.fingerprints[self.master_address]

    def describe(self) -> ProbeResult:
        x = self.xenapi
        pool_ref = x.pool.get_all()[0]
        pool = x.pool.get_record(pool_ref)
        hosts = x.host.get_all_records()
        master = hosts.get(pool["master"], {})
        version = master.get("software_version", {})
        vm_count = sum(1 for vm in x.VM.get_all_records().values() if is_guest_vm(vm))
        return ProbeResult(
            master_address=self.master_address,
            pool_uuid=pool["uuid"],
            pool_name=pool.get("name_label") or master.get("name_label", ""),
            product_brand=version.get("product_brand", ""),
            product_version=version.get("product_version", ""),
            ha_enabled=bool(pool.get("ha_enabled")),
            hosts=sorted((h["name_label"], h["address"], ref == pool["master"]) for ref, h in hosts.items()),
            vm_count=vm_count,
            fingerprint=self._master_fingerprint(),
            redirected_from=self.redirected_from,
        )

    def pin_member_certificates(self, hosts: dict) -> dict:
        """Learn each host's certificate over this (verified) master session.

        Returns the address -> fingerprint map to store; hosts whose certificate cannot be read
        stay unpinned, so failover to them is refused rather than trusted blindly.
        """
        pins = {}
        if self.address.scheme != "https":
            return pins
        for ref, host in hosts.items():
            if host.get("address") == self.master_address:
                pins[self.master_address] = self.fingerprints.get(self.master_address)
                continue
            try:
                pem = self.xenapi.host.get_server_certificate(ref)
                pins[host["address"]] = fingerprint_of_pem(pem)
            except (XenAPI.Failure, ValueError) as exc:
                logger.info("cannot read the certificate of host %s: %s", host.get("address"), exc)
        return {k: v for k, v in pins.items() if v}

    # HTTP transfers -----------------------------------------------------------------------
    def transfer_url(self, path: str, host_address: str | None = None, **query) -> str:
        query = {"session_id": self.session._session, **query}
        return f"{self.address.url(host_address or self.master_address)}{path}?{urlencode(query)}"

    def open_transfer(self, method: str, path: str, query: dict, *, body=None, content_length=None,
                      host_address: str | None = None):
        """Start an HTTP transfer (GET /export..., PUT /import...) and return the response.

        The session goes in the query. `body` (PUT) is bytes, a file-like object or an
        iterable of bytes; send `content_length` with a stream (xapi refuses chunked encoding).
        xapi answers a transfer before reading its body (200 with task-id, or 302 to the host
        that sees the SR), so the headers go first and the body is sent only once the answer
        says where: a 302 is followed with the same method and the untouched body (requests
        would turn a redirected PUT into a GET). The caller reads, then closes, the response.
        """
        host = host_address or self.master_address
        target = f"{path}?{urlencode({'session_id': self.session._session, **query})}"
        if isinstance(body, (bytes, bytearray)):
            content_length = len(body)
        for _hop in range(MAX_REDIRECTS + 1):
            connection = self._http_connection(host)
            try:
                connection.putrequest(method, target, skip_accept_encoding=True)
                if content_length is not None:
                    connection.putheader("Content-Length", str(content_length))
                connection.endheaders()
                sock = connection.sock       # getresponse() hands it to the response on Connection: close
                if body is not None and not _answered_early(sock):
                    _send_body(sock, body)
                    body = None
                response = connection.getresponse()
            except PoolError:
                connection.close()
                raise
            except OSError as exc:
                connection.close()
                raise PoolUnreachable(_describe_os_error(host, self.address.port, exc)) from exc
            except BaseException:      # the body's source failed (a damaged chunk, a cancel): hang up
                connection.close()
                raise
            if response.status in (301, 302, 303, 307, 308):
                host, target = self._redirect_target(response)
                response.close()
                connection.close()
                continue
            if response.status >= 400:
                detail = response.read(2000).decode("utf-8", "replace").strip()
                connection.close()
                raise PoolError(f"{method} {path} on {host} failed: HTTP {response.status} {response.reason} {detail}".strip())
            if body is not None:
                try:
                    _send_body(sock, body)
                except OSError as exc:
                    response.close()
                    raise PoolUnreachable(f"{host} closed the connection while receiving {path}: {exc}") from exc
                except BaseException:
                    response.close()
                    raise
            response.transfer_host = host      # where the transfer ended up (after redirects)
            return response
        raise PoolError(f"too many redirects for {method} {path}")

    def _redirect_target(self, response):
        location = urlsplit(response.getheader("Location", ""))
        host = location.hostname
        if not host:
            raise PoolError("the pool answered a redirect without a location")
        # A redirect may only lead to a host of this pool, and its certificate must be pinned.
        known = {self.master_address, *self.candidates, *self.fingerprints}
        if host not in known:
            raise PoolError(f"the pool redirected to {host}, which is not one of its known hosts; sync the pool first")
        return host, location.path + (f"?{location.query}" if location.query else "")

    def _http_connection(self, host):
        if self.address.scheme == "https":
            return PinnedHTTPSConnection(host, self.address.port, pinned=self.fingerprints.get(host),
                                         also_trusted=self._pool_fingerprints(), timeout=None)
        connection = http.client.HTTPConnection(host, self.address.port, timeout=CONNECT_TIMEOUT)
        connection.connect()
        connection.sock.settimeout(None)     # transfers may pause for a long time
        return connection

    # tasks -----------------------------------------------------------------------------------
    def wait_task(self, task_ref, on_progress=None, timeout=None, poll=0.5):
        """Wait for a task to finish; return its decoded result or raise PoolTaskFailed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_progress = None
        while True:
            record = self.xenapi.task.get_record(task_ref)
            status = record["status"]
            if on_progress and record.get("progress") != last_progress:
                last_progress = record.get("progress")
                on_progress(float(last_progress or 0))
            if status == "success":
                return decode_task_result(record.get("result", ""))
            if status in ("failure", "cancelled"):
                raise PoolTaskFailed(task_ref, record.get("error_info") or [status.upper()])
            if deadline is not None and time.monotonic() > deadline:
                raise PoolTimeout(f"task {record.get('name_label', task_ref)} did not finish within {timeout} s")
            time.sleep(poll)

    # shutdown --------------------------------------------------------------------------------
    def _discard_session(self):
        self.session = None

    def close(self):
        if self.session is not None:
            try:
                self.session.xenapi.session.logout()
            except Exception:  # noqa: BLE001 - logging out of a dead pool is not an error
                pass
            self.session = None


EARLY_ANSWER_WAIT = 5.0     # seconds to wait for xapi's answer before sending a PUT body anyway
SEND_BLOCK = 1 << 20


def _answered_early(sock) -> bool:
    """True when the server answered before we sent the body (xapi always does)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    return bool(select.select([sock], [], [], EARLY_ANSWER_WAIT)[0])


def _send_body(sock, body):
    if isinstance(body, (bytes, bytearray)):
        sock.sendall(body)
        return
    if hasattr(body, "read"):
        while block := body.read(SEND_BLOCK):
            sock.sendall(block)
        return
    for block in body:
        sock.sendall(block)


class _Calls:
    """Attribute access builds a XenAPI method name (`VM.get_record`); calling it sends it."""

    __slots__ = ("_call", "_name")

    def __init__(self, call, name=None):
        self._call, self._name = call, name

    def __getattr__(self, name):
        return _Calls(self._call, f"{self._name}.{name}" if self._name else name)

    def __call__(self, *params):
        return self._call(self._name, params)


def decode_task_result(result: str):
    """task.result is an XML-RPC <value> fragment (or ""): return its Python value."""
    if not result:
        return ""
    if "<value" not in result:
        return result
    params, _method = xmlrpc.client.loads(f"<params><param>{result}</param></params>")
    return params[0]


def is_guest_vm(record: dict) -> bool:
    return not (record.get("is_a_template") or record.get("is_control_domain") or record.get("is_a_snapshot"))
