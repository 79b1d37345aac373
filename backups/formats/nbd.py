"""A read-only NBD client that works with xapi-nbd (xenapi-notes section 7).

xapi-nbd only speaks fixed newstyle and finishes negotiation only with NBD_OPT_EXPORT_NAME
(NBD_OPT_GO gets NBD_REP_ERR_UNSUP), accepts NBD_CMD_READ at 512-byte alignment and
NBD_CMD_DISC, and needs STARTTLS on ``nbd`` networks. We try GO first (it reports errors
properly on fuller servers such as nbdkit) and fall back to EXPORT_NAME.

TLS trust: hosts present self-signed certificates, which ``VDI.get_nbd_info`` hands out in
its ``cert`` field. We pin that certificate: the handshake succeeds only if the peer shows
exactly those DER bytes. No CA chain or host name is involved in that case.
"""
from __future__ import annotations

import socket
import ssl
import struct
from collections import deque
from typing import Iterator

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC_OPT = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_STARTTLS = 5
OPT_GO = 7

REP_ACK = 1
REP_INFO = 3
REP_ERR = 1 << 31
REP_ERR_UNSUP = REP_ERR | 1
INFO_EXPORT = 0

CMD_READ = 0
CMD_DISC = 2

SECTOR = 512
MAX_REQUEST = 2 << 20  # bytes per NBD_CMD_READ; xapi-nbd and nbdkit accept this
PIPELINE_DEPTH = 16

_REP_ERRORS = {
    1: "unsupported option", 2: "refused by server policy", 3: "invalid request",
    4: "not supported on this platform", 5: "TLS required", 6: "unknown export",
    7: "server shutting down", 8: "block size required", 9: "request too big",
}


class NbdError(Exception):
    """Connection, negotiation, TLS or read failure; the message says which."""


class NbdClient:
    def __init__(self, sock: socket.socket, size: int, flags: int, peer: str):
        self._sock = sock
        self.size = size
        self.flags = flags
        self.peer = peer
        self._next_handle = 1

    # ------------------------------------------------------------------ handshake

    @classmethod
    def connect(cls, host: str, port: int, export_name: str, *, tls: bool,
                cert_pem: str | None = None, server_name: str | None = None,
                timeout: float = 30) -> "NbdClient":
        peer = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, int(port)), timeout=timeout)
        except OSError as exc:
            raise NbdError(f"cannot connect to NBD server {peer}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock, size, flags = _negotiate(sock, peer, export_name, tls, cert_pem,
                                           server_name or host)
        except BaseException:
            sock.close()
            raise
        return cls(sock, size, flags, peer)

    # ------------------------------------------------------------------ transmission

    def read(self, offset: int, length: int) -> bytes:
        """length bytes at offset; both multiples of 512 (xapi-nbd requires it)."""
        return b"".join(data for _, data in self.read_many([(offset, length)]))

    def read_many(self, ranges: list[tuple[int, int]]) -> Iterator[tuple[int, bytes]]:
        """(offset, data) for each piece of the ranges, in order, with requests pipelined.

        Ranges longer than MAX_REQUEST come back as several consecutive pieces.
        """
        requests = deque()
        for offset, length in ranges:
            self._check_range(offset, length)
            for start in range(offset, offset + length, MAX_REQUEST):
                requests.append((start, min(MAX_REQUEST, offset + length - start)))
        in_flight: deque[tuple[int, int, int]] = deque()  # (handle, offset, length) sent
        arrived: dict[int, bytes] = {}
        try:
            while requests or in_flight:
                while requests and len(in_flight) < PIPELINE_DEPTH:
                    offset, length = requests.popleft()
                    handle = self._send_request(CMD_READ, offset, length)
                    in_flight.append((handle, offset, length))
                handle, offset, length = in_flight[0]
                while handle not in arrived:
                    got_handle, data, error = self._receive_reply(
                        {h: n for h, _, n in in_flight})
                    arrived[got_handle] = (data, error)
                in_flight.popleft()
                data, error = arrived.pop(handle)
                if error:
                    raise NbdError(f"NBD server {self.peer}: read at {offset}+{length} failed "
                                   f"with errno {error}")
                yield offset, data
        finally:
            if in_flight:  # the caller stopped early or a read failed: resynchronise
                self._drain({h: n for h, _, n in in_flight if h not in arrived})

    def _drain(self, pending: dict[int, int]) -> None:
        """Read and drop the replies still owed, so the next request starts clean; if
        that fails the connection is unusable and is closed."""
        if self._sock is None:
            return
        try:
            while pending:
                handle, _, _ = self._receive_reply(pending)
                del pending[handle]
        except NbdError:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        if self._sock is None:
            return
        try:
            self._send_request(CMD_DISC, 0, 0)
        except (OSError, ValueError, NbdError):
            pass  # the server may already have gone; nothing to recover
        finally:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_range(self, offset: int, length: int) -> None:
        if offset % SECTOR or length % SECTOR:
            raise ValueError(f"NBD read at {offset}+{length} is not 512-byte aligned")
        if offset < 0 or length <= 0 or offset + length > self.size:
            raise ValueError(f"NBD read at {offset}+{length} is outside the export "
                             f"(size {self.size})")

    def _send_request(self, command: int, offset: int, length: int) -> int:
        if self._sock is None:
            raise NbdError(f"NBD connection to {self.peer} is closed")
        handle = self._next_handle
        self._next_handle += 1
        message = struct.pack(">IHHQQI", REQUEST_MAGIC, 0, command, handle, offset, length)
        try:
            self._sock.sendall(message)
        except OSError as exc:
            raise NbdError(f"NBD server {self.peer}: sending a request failed: {exc}") from exc
        return handle

    def _receive_reply(self, lengths: dict[int, int]) -> tuple[int, bytes | None, int]:
        """(handle, data, errno) of the next simple reply; data is None on error."""
        if self._sock is None:
            raise NbdError(f"NBD connection to {self.peer} is closed")
        magic, error, handle = struct.unpack(">IIQ", _recv_exact(self._sock, 16, self.peer))
        if magic != SIMPLE_REPLY_MAGIC:
            raise NbdError(f"NBD server {self.peer}: bad reply magic {magic:#x}")
        if handle not in lengths:
            raise NbdError(f"NBD server {self.peer}: reply for unknown handle {handle}")
        if error:
            return handle, None, error
        return handle, _recv_exact(self._sock, lengths[handle], self.peer), 0


def _negotiate(sock, peer, export_name, tls, cert_pem, server_name):
    magic, opt_magic, server_flags = struct.unpack(">QQH", _recv_exact(sock, 18, peer))
    if magic != NBDMAGIC:
        raise NbdError(f"{peer} is not an NBD server (greeting {magic:#x})")
    if opt_magic != IHAVEOPT or not server_flags & FLAG_FIXED_NEWSTYLE:
        raise NbdError(f"NBD server {peer} does not speak fixed newstyle negotiation")
    no_zeroes = bool(server_flags & FLAG_NO_ZEROES)
    sock.sendall(struct.pack(">I", FLAG_FIXED_NEWSTYLE | (FLAG_NO_ZEROES if no_zeroes else 0)))
    if tls:
        _send_option(sock, OPT_STARTTLS, b"")
        reply, data = _receive_option_reply(sock, OPT_STARTTLS, peer)
        if reply != REP_ACK:
            raise NbdError(f"NBD server {peer} refused STARTTLS: {_describe(reply, data)}")
        sock = _start_tls(sock, peer, cert_pem, server_name)
    name = export_name.encode()
    _send_option(sock, OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
    size = flags = None
    while True:
        reply, data = _receive_option_reply(sock, OPT_GO, peer)
        if reply == REP_INFO and len(data) >= 12 and data[:2] == struct.pack(">H", INFO_EXPORT):
            size, flags = struct.unpack(">QH", data[2:12])
        elif reply == REP_ACK:
            if size is None:
                raise NbdError(f"NBD server {peer} finished GO without the export size")
            return sock, size, flags
        elif reply == REP_ERR_UNSUP:
            break  # xapi-nbd: only EXPORT_NAME ends negotiation
        elif reply & REP_ERR:
            raise NbdError(f"NBD server {peer} refused export: {_describe(reply, data)}")
    _send_option(sock, OPT_EXPORT_NAME, name)
    try:
        size, flags = struct.unpack(">QH", _recv_exact(sock, 10, peer))
    except NbdError as exc:
        raise NbdError(f"NBD server {peer} closed the connection on EXPORT_NAME "
                       "(unknown export or expired session?)") from exc
    if not no_zeroes:
        _recv_exact(sock, 124, peer)
    return sock, size, flags


def _start_tls(sock, peer, cert_pem, server_name):
    if cert_pem:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # replaced by the exact pin check below
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    else:
        context = ssl.create_default_context()
    try:
        tls_sock = context.wrap_socket(sock, server_hostname=server_name)
    except (ssl.SSLError, OSError) as exc:
        raise NbdError(f"TLS handshake with NBD server {peer} failed: {exc}") from exc
    if cert_pem:
        try:
            expected = ssl.PEM_cert_to_DER_cert(cert_pem.strip() + "\n")
        except ValueError as exc:
            tls_sock.close()
            raise NbdError(f"the pinned certificate for {peer} is not a PEM certificate") from exc
        if tls_sock.getpeercert(binary_form=True) != expected:
            tls_sock.close()
            raise NbdError(f"NBD server {peer} presented a certificate other than the "
                           "pinned host certificate")
    return tls_sock


def _send_option(sock, option: int, data: bytes) -> None:
    sock.sendall(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)


def _receive_option_reply(sock, option: int, peer: str) -> tuple[int, bytes]:
    magic, got_option, reply, length = struct.unpack(">QIII", _recv_exact(sock, 20, peer))
    if magic != REPLY_MAGIC_OPT or got_option != option:
        raise NbdError(f"NBD server {peer}: bad option reply (magic {magic:#x}, "
                       f"option {got_option})")
    if length > 1 << 20:
        raise NbdError(f"NBD server {peer}: option reply of {length} bytes")
    return reply, _recv_exact(sock, length, peer)


def _describe(reply: int, data: bytes) -> str:
    text = _REP_ERRORS.get(reply & ~REP_ERR, f"reply {reply:#x}") if reply & REP_ERR \
        else f"reply {reply}"
    message = data.decode("utf-8", "replace").strip()
    return f"{text} ({message})" if message else text


def _recv_exact(sock, n: int, peer: str) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            k = sock.recv_into(view[got:])
        except socket.timeout as exc:
            raise NbdError(f"NBD server {peer} timed out") from exc
        except OSError as exc:
            raise NbdError(f"NBD connection to {peer} failed: {exc}") from exc
        if not k:
            raise NbdError(f"NBD server {peer} closed the connection")
        got += k
    return bytes(buf)


def connect_from_nbd_info(records: list[dict], *, tls: bool = True,
                          timeout: float = 30) -> NbdClient:
    """Connect to the first reachable export of ``VDI.get_nbd_info``'s records.

    tls must match the network's purpose: True for ``nbd`` (the default, pinned to each
    record's ``cert``), False only for an ``insecure_nbd`` network, which the caller knows
    from ``network.purpose``. We never fall back from TLS to cleartext on our own: a
    downgrade would hide an attack or a misconfiguration.
    """
    if not records:
        raise NbdError("VDI.get_nbd_info returned no records (no NBD network on a host "
                       "that sees the SR)")
    failures = []
    for record in records:
        try:
            return NbdClient.connect(
                record["address"], int(record["port"]), record["exportname"], tls=tls,
                cert_pem=record.get("cert") if tls else None,
                server_name=record.get("subject") or record["address"], timeout=timeout)
        except NbdError as exc:
            failures.append(str(exc))
    raise NbdError("no NBD export could be opened: " + "; ".join(failures))
