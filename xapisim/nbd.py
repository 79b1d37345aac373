"""The simulator's NBD server: serves VDIs read-only, as minimal as xapi-nbd.

A real host runs xapi-nbd, built on the OCaml library ``xapi-project/nbd`` (6.0.1,
``lib/server.ml``). It knows far less of the NBD protocol (NetworkBlockDevice
``doc/proto.md``) than nbdkit or qemu-nbd, and a client written against those fuller
servers breaks on it. This server reproduces its answers, so that a console that works
here works on a real host (xenapi-notes.md section 7):

- Greeting: fixed newstyle only (``NBDMAGIC``, ``IHAVEOPT``, handshake flags 0x0001; no
  NO_ZEROES). Negotiation ends only with ``NBD_OPT_EXPORT_NAME``; the reply is the size,
  transmission flags 0x0003 (HAS_FLAGS | READ_ONLY) and 124 zero bytes. A refused export
  name (unknown VDI, bad session) closes the connection, the only refusal EXPORT_NAME has.
- Other options: ``LIST`` gets ERR_POLICY; ``ABORT`` gets ACK, then close; ``STARTTLS``
  gets ERR_POLICY in cleartext mode and ERR_INVALID once TLS is up; everything else
  (GO, INFO, STRUCTURED_REPLY, meta contexts, ...) gets ERR_UNSUP.
- Mode "tls" (network purpose ``nbd``, FORCEDTLS): the client must report fixed newstyle;
  before STARTTLS every option gets ERR_TLS_REQD, except EXPORT_NAME and ABORT, which
  close the connection without a reply (xapi-nbd fails the handshake on both).
- Mode "refuse" (both or neither purpose): a real host closes port 10809 with an iptables
  REJECT rule (``nbd-firewall-config.sh``), so the client never sees a greeting. Here the
  connection is accepted and reset at once, before any byte is sent.
- Transmission, simple replies only: READ (offset and length multiples of 512) and DISC.
  WRITE gets EPERM, everything else (FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS) gets
  EINVAL. xapi-nbd reads the 32-bit command field as one number, so a command carrying any
  flag bit (FUA, DF, ...) is unknown to it and gets EINVAL; so here too.

Where this server is stricter than xapi-nbd, to keep memory bounded or the stream in sync:
a READ past the end of the export or longer than 32 MiB gets EINVAL (xapi-nbd sends an OK
header and then drops the connection when the block read fails); a WRITE's payload is
read and discarded (xapi-nbd leaves it in the stream, which then fails as a bad request);
an option payload above 64 KiB closes the connection.

Clients: libnbd (nbdcopy, nbdinfo 1.14) falls back from GO to EXPORT_NAME and reads such a
server. QEMU 7.2 (qemu-img) does not: after GO is unsupported it asks LIST, and takes
xapi-nbd's ERR_POLICY as fatal ("Denied by server for option 3 (list)").

Threads: one accepts, one serves each connection (requests in order, one at a time);
``on_bytes`` is called from the connection threads, so it must be thread-safe.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from typing import Callable, Protocol, runtime_checkable

log = logging.getLogger(__name__)

# Handshake (proto.md "Fixed newstyle negotiation").
NBD_MAGIC = b"NBDMAGIC"
IHAVEOPT = b"IHAVEOPT"
OPTION_REPLY_MAGIC = 0x0003E889045565A9
FLAG_FIXED_NEWSTYLE = 1
FLAG_C_FIXED_NEWSTYLE = 1

NBD_OPT_EXPORT_NAME = 1
NBD_OPT_ABORT = 2
NBD_OPT_LIST = 3
NBD_OPT_STARTTLS = 5

NBD_REP_ACK = 1
NBD_REP_ERR_UNSUP = 0x80000001
NBD_REP_ERR_POLICY = 0x80000002
NBD_REP_ERR_INVALID = 0x80000003
NBD_REP_ERR_TLS_REQD = 0x80000005

# Transmission flags sent after EXPORT_NAME: HAS_FLAGS | READ_ONLY, nothing else.
TRANSMISSION_FLAGS = 0x0003
EXPORT_REPLY_ZEROES = 124

# Transmission (proto.md "Transmission phase").
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
NBD_CMD_READ = 0
NBD_CMD_WRITE = 1
NBD_CMD_DISC = 2
EPERM = 1
EINVAL = 22

SECTOR_SIZE = 512
MAX_READ_LENGTH = 32 * 1024 * 1024
MAX_OPTION_LENGTH = 64 * 1024
# Reads are fetched and sent in pieces so a connection holds at most this much.
READ_PIECE = 1024 * 1024

MODES = ("tls", "insecure", "refuse")

_OPTION_HEADER = struct.Struct(">8sII")  # magic, option, length
_OPTION_REPLY = struct.Struct(">QIII")  # magic, option, reply type, length
# magic, command flags << 16 | type (one number, as xapi-nbd reads it), handle, offset, length
_REQUEST = struct.Struct(">IIQQI")
_SIMPLE_REPLY = struct.Struct(">IIQ")  # magic, error, handle
_EXPORT_REPLY = struct.Struct(">QH")  # size, transmission flags (then 124 zero bytes)


@runtime_checkable
class NbdExport(Protocol):
    """A disk the resolver hands to the server (xapisim.disks.DiskReader has this shape)."""

    size: int

    def read(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class NbdRefused(Exception):
    """Raised by the resolver for an unknown VDI or a bad or expired session."""


class _HangUp(Exception):
    """The connection ends: the client left or broke the protocol, or the disk failed."""


class NbdServer:
    """Threaded NBD server: one thread accepts, one thread serves each connection."""

    def __init__(
        self,
        host: str,
        port: int,
        resolve: Callable[[str], NbdExport],
        *,
        mode: str,
        ssl_context: ssl.SSLContext | None = None,
        on_bytes: Callable[[int], None] | None = None,
        max_connections: int = 64,
    ):
        if mode not in MODES:
            raise ValueError(f"NBD mode must be one of {MODES}, not {mode!r}")
        if mode == "tls" and ssl_context is None:
            raise ValueError('NBD mode "tls" needs a server ssl_context')
        self.host = host
        self._port = port
        self.resolve = resolve
        self.mode = mode
        self.ssl_context = ssl_context
        self.on_bytes = on_bytes
        self.max_connections = max_connections
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._connections: dict[_Connection, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def port(self) -> int:
        """The listening port: the real one once started, even if 0 was asked for."""
        return self._port

    def start(self) -> None:
        self._listener = socket.create_server((self.host, self._port), backlog=16)
        self._port = self._listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"nbd-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()
        log.info("NBD server (%s) listening on %s:%d", self.mode, self.host, self.port)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone does not.
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join()
        with self._lock:
            connections = list(self._connections.items())
        for connection, _ in connections:
            connection.abort()
        for _, thread in connections:
            thread.join()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, peer = self._listener.accept()
            except OSError:
                if self._stopping:
                    return
                log.exception("NBD accept failed")
                time.sleep(0.1)  # e.g. out of file descriptors: do not spin
                continue
            try:
                self._admit(sock, peer)
            except Exception:
                log.exception("NBD connection from %s could not be started", peer)
                _reset(sock)

    def _admit(self, sock: socket.socket, peer) -> None:
        with self._lock:
            if self._stopping:
                _reset(sock)
                return
            if self.mode == "refuse" or len(self._connections) >= self.max_connections:
                log.info("NBD connection from %s refused (mode %s, %d open)",
                         peer, self.mode, len(self._connections))
                _reset(sock)
                return
            connection = _Connection(self, sock, peer)
            thread = threading.Thread(
                target=self._serve, args=(connection,), name=f"nbd-{peer[0]}:{peer[1]}", daemon=True
            )
            self._connections[connection] = thread
            # Started under the lock, so stop() never sees a registered thread it cannot join.
            try:
                thread.start()
            except RuntimeError:
                del self._connections[connection]
                connection.close()
                raise

    def _serve(self, connection: "_Connection") -> None:
        try:
            connection.run()
        finally:
            with self._lock:
                del self._connections[connection]


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST: the nearest a listening socket gets to "connection refused"."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Connection:
    def __init__(self, server: NbdServer, sock: socket.socket, peer):
        self.server = server
        self.peer = peer
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = sock
        # A second handle on the same TCP socket: stop() shuts it down from another thread
        # even while STARTTLS is swapping self.sock for its TLS wrapper.
        self._control = sock.dup()
        self.is_tls = False

    def abort(self) -> None:
        try:
            self._control.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def run(self) -> None:
        export = None
        try:
            name = self._negotiate()
            if name is None:
                return
            try:
                export = self.server.resolve(name)
            except NbdRefused as refusal:
                log.info("NBD export %r refused for %s: %s", name, self.peer, refusal)
                return
            self._send(_EXPORT_REPLY.pack(export.size, TRANSMISSION_FLAGS) + bytes(EXPORT_REPLY_ZEROES))
            self._transmit(export)
        except _HangUp as gone:
            log.info("NBD connection from %s ended: %s", self.peer, gone)
        except (OSError, ssl.SSLError) as error:
            log.info("NBD connection from %s dropped: %s", self.peer, error)
        except Exception:
            log.exception("NBD connection from %s failed", self.peer)
        finally:
            if export is not None:
                try:
                    export.close()
                except Exception:
                    log.exception("closing NBD export for %s failed", self.peer)
            self.close()

    def close(self) -> None:
        self.sock.close()
        self._control.close()

    # --- handshake ---------------------------------------------------------------------

    def _negotiate(self) -> str | None:
        """Run the option haggling; return the export name, or None to hang up."""
        self._send(NBD_MAGIC + IHAVEOPT + struct.pack(">H", FLAG_FIXED_NEWSTYLE))
        (client_flags,) = struct.unpack(">I", self._recv_exactly(4))
        if self.server.mode == "tls":
            if not client_flags & FLAG_C_FIXED_NEWSTYLE:
                raise _HangUp("client without fixed newstyle cannot start TLS")
            self._require_tls()
        while True:
            option, payload = self._read_option()
            if option == NBD_OPT_EXPORT_NAME:
                try:
                    return payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise _HangUp("export name is not UTF-8") from None
            if option == NBD_OPT_ABORT:
                try:
                    self._reply_option(option, NBD_REP_ACK)
                except (OSError, ssl.SSLError):
                    pass
                return None
            if option == NBD_OPT_STARTTLS:
                self._reply_option(option, NBD_REP_ERR_INVALID if self.is_tls else NBD_REP_ERR_POLICY)
            elif option == NBD_OPT_LIST:
                self._reply_option(option, NBD_REP_ERR_POLICY)
            else:
                self._reply_option(option, NBD_REP_ERR_UNSUP)

    def _require_tls(self) -> None:
        """FORCEDTLS: answer TLS_REQD until the client sends STARTTLS, then wrap the socket."""
        while True:
            option, _ = self._read_option()
            if option == NBD_OPT_STARTTLS:
                self._reply_option(option, NBD_REP_ACK)
                self.sock = self.server.ssl_context.wrap_socket(self.sock, server_side=True)
                self.is_tls = True
                return
            if option in (NBD_OPT_EXPORT_NAME, NBD_OPT_ABORT):
                raise _HangUp(f"option {option} before TLS in FORCEDTLS mode")
            self._reply_option(option, NBD_REP_ERR_TLS_REQD)

    def _read_option(self) -> tuple[int, bytes]:
        magic, option, length = _OPTION_HEADER.unpack(self._recv_exactly(_OPTION_HEADER.size))
        if magic != IHAVEOPT:
            raise _HangUp(f"bad option magic {magic!r}")
        if length > MAX_OPTION_LENGTH:
            raise _HangUp(f"option {option} payload of {length} bytes is too long")
        return option, self._recv_exactly(length)

    def _reply_option(self, option: int, reply: int) -> None:
        self._send(_OPTION_REPLY.pack(OPTION_REPLY_MAGIC, option, reply, 0))

    # --- transmission ------------------------------------------------------------------

    def _transmit(self, export: NbdExport) -> None:
        while True:
            magic, command, handle, offset, length = _REQUEST.unpack(self._recv_exactly(_REQUEST.size))
            if magic != REQUEST_MAGIC:
                raise _HangUp(f"bad request magic {magic:#x}")
            if command == NBD_CMD_READ:
                self._read(export, handle, offset, length)
            elif command == NBD_CMD_DISC:
                raise _HangUp("client sent NBD_CMD_DISC")
            elif command & 0xFFFF == NBD_CMD_WRITE:
                self._discard(length)
                self._reply(handle, EPERM if command == NBD_CMD_WRITE else EINVAL)
            else:
                self._reply(handle, EINVAL)

    def _read(self, export: NbdExport, handle: int, offset: int, length: int) -> None:
        if (
            offset % SECTOR_SIZE
            or length % SECTOR_SIZE
            or length > MAX_READ_LENGTH
            or offset + length > export.size
        ):
            self._reply(handle, EINVAL)
            return
        # Like xapi-nbd: the OK header goes first; a failing disk read then drops the
        # connection, which is what the protocol requires once the header is out.
        self._reply(handle, 0)
        end = offset + length
        while offset < end:
            count = min(READ_PIECE, end - offset)
            try:
                data = export.read(offset, count)
            except Exception as error:
                raise _HangUp(f"export read of {count} bytes at {offset} failed: {error!r}") from error
            if len(data) != count:
                raise _HangUp(f"export read returned {len(data)} of {count} bytes at {offset}")
            self._send(data)
            if self.server.on_bytes is not None:
                self.server.on_bytes(count)
            offset += count

    def _discard(self, length: int) -> None:
        while length:
            length -= len(self._recv_exactly(min(length, READ_PIECE)))

    def _reply(self, handle: int, error: int) -> None:
        self._send(_SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, handle))

    # --- socket ------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        self.sock.sendall(memoryview(data))

    def _recv_exactly(self, count: int) -> bytes:
        buffer = bytearray(count)
        view = memoryview(buffer)
        received = 0
        while received < count:
            n = self.sock.recv_into(view[received:])
            if n == 0:
                raise _HangUp("client closed the connection")
            received += n
        return bytes(buffer)
