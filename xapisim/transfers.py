"""HTTP transfer handlers (notes section 5): /export, /import, /export_raw_vdi,
/import_raw_vdi, /export_metadata.

Bodies stream in ~1-4 MiB pieces written with one sendall each; nothing is buffered whole.
Progress goes to the task as bytes move; faults (drop after N bytes, rate limit) are applied
by ``Meter``.
"""

import base64
import io
import time
import traceback
import uuid as uuidlib
import zlib

import zstandard

from . import inventory as inv
from .api.dispatch import finish_task, new_task
from .api.sessions import check_session, drop_session, open_session
from .errors import XapiError
from .lifecycle import check_operation
from .ova import Export, Import
from .transfer_log import start_http
from .vhd import read_vhd, write_vhd
from .xva import open_decompressed, read_xva, write_xva

PIECE = 4 << 20
PROGRESS_INTERVAL = 0.2
_ZEROS = bytes(PIECE)


class TransferAborted(Exception):
    """The connection went away (or a fault dropped it) mid-transfer."""


# -- auth and tasks -------------------------------------------------------------------
class Auth:
    def __init__(self, session: str, throwaway: bool):
        self.session = session
        self.throwaway = throwaway


def authenticate(handler, query: dict, realm: str) -> Auth | None:
    """session_id from the query or a cookie, or HTTP Basic (a throw-away session);
    otherwise answer 401 and return None."""
    sim = handler.sim
    session = query.get("session_id") or _cookie(handler, "session_id")
    with sim.db.lock:
        if session:
            try:
                check_session(sim, session)
                return Auth(session, False)
            except XapiError:
                pass
        basic = handler.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                user = password = ""
            if user == "root" and password == sim.config.password:
                return Auth(open_session(sim, user, "http-basic"), True)
    handler.send_plain(401, "Unauthorised", headers={"WWW-Authenticate": 'Basic realm="%s"' % realm})
    return None


def _cookie(handler, name: str) -> str | None:
    for part in handler.headers.get("Cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _task_for(handler, auth: Auth, query: dict, label: str) -> str:
    sim = handler.sim
    with sim.db.lock:
        task = query.get("task_id")
        if task and sim.db.exists("task", task):
            return task
        return new_task(sim, auth.session, label)


def _lookup(sim, cls: str, value: str | None) -> str:
    if not value:
        raise XapiError("HANDLE_INVALID", cls, "")
    if value.startswith("OpaqueRef:"):
        sim.db.get(cls, value)
        return value
    return sim.db.ref_of_uuid(cls, value)


def _redirect_if_elsewhere(handler, srs: set[str]) -> bool:
    """302 to a host that sees every SR in ``srs`` when this host does not (importexport.ml).
    xapi always redirects to https://<address>/...; the simulator uses its own scheme (http
    without --tls) and adds the port because all hosts share the pool's port."""
    sim = handler.sim
    with sim.db.lock:
        def sees_all(host):
            return all(host in inv.hosts_seeing_sr(sim, sr) for sr in srs)
        if sees_all(handler.host):
            return False
        target = next((h for h in sim.live_hosts() if sees_all(h)), None)
        if target is None:
            return False
        location = sim.url_of(target) + handler.path
    handler.send_response(302)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True
    return True


def _fail_early(handler, task: str | None, error: list) -> None:
    code = 404 if error[0] in ("HANDLE_INVALID", "UUID_INVALID", "FORMAT_NOT_SUPPORTED") else 500
    if task:
        finish_task(handler.sim, task, error=error)
    handler.send_plain(code, " ".join(error), headers={"task-id": task} if task else None)
    handler.close_connection = True


def _end(sim, auth: Auth) -> None:
    if auth.throwaway:
        with sim.db.lock:
            drop_session(sim, auth.session)


# -- metering: progress, cancel, faults -------------------------------------------------
class Meter:
    def __init__(self, sim, task: str, total: int):
        self.sim = sim
        self.task = task
        self.total = max(total, 1)
        self.done = 0
        self.started = time.monotonic()
        self.last_report = 0.0
        self.drop_after = sim.faults.take_transfer_drop()
        self.rate = sim.faults.transfer_rate

    def allowance(self, wanted: int) -> int:
        """How much of ``wanted`` may move now; raises TransferAborted at a drop point."""
        if self.drop_after is not None:
            left = self.drop_after - self.done
            if left <= 0:
                raise TransferAborted("connection dropped by fault injection after %d bytes" % self.done)
            wanted = min(wanted, left)
        if self.rate:
            wanted = min(wanted, max(self.rate // 10, 512))
        return wanted

    def moved(self, n: int) -> None:
        self.done += n
        if self.rate:
            ahead = self.done / self.rate - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)
        now = time.monotonic()
        if now - self.last_report >= PROGRESS_INTERVAL:
            self.last_report = now
            self.report()

    def report(self) -> None:
        sim = self.sim
        with sim.db.lock:
            if self.task in sim.cancelled_tasks:
                raise XapiError("TASK_CANCELLED", self.task)
            if sim.db.exists("task", self.task):
                progress = min(self.done / self.total, 0.99)
                sim.db.update("task", self.task, progress=round(progress, 4))


class Sender:
    """Writes to the client socket through a Meter."""

    def __init__(self, handler, meter: Meter):
        self.sock = handler.connection
        self.meter = meter

    def send(self, data) -> None:
        view = memoryview(data)
        while view:
            n = self.meter.allowance(len(view))
            try:
                self.sock.sendall(view[:n])
            except OSError as e:
                raise TransferAborted(str(e)) from None
            self.meter.moved(n)
            view = view[n:]

    def drop(self) -> None:
        import socket
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _send_stream_headers(handler, task: str, content_type: str, filename: str, http10: bool) -> None:
    lines = ["HTTP/1.0 200 OK" if http10 else "HTTP/1.1 200 OK", "Connection: close",
             "Cache-Control: no-cache, no-store", "task-id: %s" % task, "Server: xapi",
             "content-type: %s" % content_type, 'Content-Disposition: attachment; filename="%s"' % filename]
    handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    handler.close_connection = True


def _run_stream(handler, task: str, meter: Meter, chunks, on_done=None, query=None) -> None:
    """Send ``chunks`` and complete the task (errors after the headers go only to the task)."""
    sim = handler.sim
    sender = Sender(handler, meter)
    interval = start_http(handler, query or {})
    try:
        for chunk in chunks:
            sender.send(chunk)
        meter.report()
        finish_task(sim, task, result="")
    except TransferAborted as e:
        sender.drop()
        finish_task(sim, task, error=["VDI_IO_ERROR", str(e)])
    except XapiError as e:
        sender.drop()
        finish_task(sim, task, error=e.details)
    except Exception as e:  # a simulator bug: the client sees a short read, the task says why
        traceback.print_exc()
        sender.drop()
        finish_task(sim, task, error=["INTERNAL_ERROR", repr(e)])
    finally:
        sim.transfer_log.end(interval)
        if on_done:
            on_done()


def _compressed(chunks, kind: str):
    if kind == "gzip":
        comp = zlib.compressobj(1, zlib.DEFLATED, 31)
        for chunk in chunks:
            out = comp.compress(chunk)
            if out:
                yield out
        yield comp.flush()
    elif kind == "zstd":
        comp = zstandard.ZstdCompressor(level=3).compressobj()
        for chunk in chunks:
            out = comp.compress(chunk)
            if out:
                yield out
        yield comp.flush()
    else:
        yield from chunks


def compression_of(query: dict) -> str:
    value = query.get("use_compression", "")
    return {"true": "gzip", "gzip": "gzip", "zstd": "zstd"}.get(value, "none")


# -- /export ---------------------------------------------------------------------------
def export_vm(handler, query: dict) -> None:
    sim = handler.sim
    auth = authenticate(handler, query, "export")
    if auth is None:
        return
    task = _task_for(handler, auth, query, "Export of VM")
    try:
        with sim.db.lock:
            vm = _lookup(sim, "VM", query.get("ref") or query.get("uuid"))
            # export.ml lock_vm: the export operation's check (halted or suspended VMs only;
            # backups export a snapshot).
            check_operation(sim.db, vm, "export")
            srs = inv.vm_disk_srs(sim, vm)
    except XapiError as e:
        _end(sim, auth)
        return _fail_early(handler, task, e.details)
    if _redirect_if_elsewhere(handler, srs):
        return _end(sim, auth)
    preserve = query.get("preserve_power_state") == "true"
    with sim.db.lock:
        export = Export(sim)
        export.add_vm(vm, preserve_power_state=preserve)
        ova = export.ova_xml()
        disks = export.disk_names()
        rec = sim.db.get("VM", vm)
        rec["current_operations"][task] = "export"
        sim.db.touch("VM", vm)
        total = sum(sim.disks.virtual_size(uuid) for _, uuid in disks)
    readers = [(name, sim.disks.open_reader(uuid)) for name, uuid in disks]

    def unlock():
        for _, reader in readers:
            reader.close()
        with sim.db.lock:
            if sim.db.exists("VM", vm):
                sim.db.get("VM", vm)["current_operations"].pop(task, None)
                sim.db.touch("VM", vm)
        _end(sim, auth)

    _send_stream_headers(handler, task, "application/octet-stream", "export.xva", http10=True)
    stream = write_xva(ova, readers, checksum=sim.product.xva_checksum, export_time=int(time.time()))
    _run_stream(handler, task, Meter(sim, task, total), _compressed(stream, compression_of(query)), unlock, query)


def export_metadata(handler, query: dict) -> None:
    """A tar holding only ova.xml, with Content-Length (export.ml metadata_handler)."""
    from .xva import tar_header
    sim = handler.sim
    auth = authenticate(handler, query, "export_metadata")
    if auth is None:
        return
    task = _task_for(handler, auth, query, "Export of VM metadata")
    try:
        with sim.db.lock:
            vm = _lookup(sim, "VM", query.get("ref") or query.get("uuid"))
            export = Export(sim)
            export.add_vm(vm, preserve_power_state=True, stream_disks=False)
            if query.get("export_snapshots", "true") == "true":
                for snap in sim.db.get("VM", vm)["snapshots"]:
                    export.add_vm(snap, preserve_power_state=True, keep_snapshot_fields=True, stream_disks=False)
            ova = export.ova_xml()
    except XapiError as e:
        _end(sim, auth)
        return _fail_early(handler, task, e.details)
    body = tar_header("ova.xml", len(ova), int(time.time())) + ova + bytes(-len(ova) % 512) + bytes(1024)
    finish_task(sim, task, result="")
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-tar")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("task-id", task)
    handler.end_headers()
    handler.wfile.write(body)
    _end(sim, auth)


# -- /export_raw_vdi -------------------------------------------------------------------
def _changed_ranges(bitmap: bytes, block: int = 65536) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for i, byte in enumerate(bitmap):
        if not byte:
            continue
        for bit in range(8):
            if byte & (0x80 >> bit):
                offset = (i * 8 + bit) * block
                if ranges and ranges[-1][0] + ranges[-1][1] == offset:
                    ranges[-1] = (ranges[-1][0], ranges[-1][1] + block)
                else:
                    ranges.append((offset, block))
    return ranges


def _raw_chunks(reader):
    """The whole disk in PIECE-sized writes; unallocated ranges come from a zero buffer."""
    size = reader.size
    pos = 0
    for offset, length in reader.allocated_extents() + [(size, 0)]:
        while pos < offset:
            n = min(PIECE, offset - pos)
            yield _ZEROS[:n]
            pos += n
        end = min(offset + length, size)
        while pos < end:
            n = min(PIECE, end - pos)
            yield reader.read(pos, n)
            pos += n


def export_raw_vdi(handler, query: dict) -> None:
    sim = handler.sim
    auth = authenticate(handler, query, "export_raw_vdi")
    if auth is None:
        return
    fmt = query.get("format", "raw")
    task = _task_for(handler, auth, query, "export_raw_vdi")
    try:
        if fmt not in ("raw", "vhd"):
            raise XapiError("FORMAT_NOT_SUPPORTED", fmt)
        with sim.db.lock:
            vdi = _lookup(sim, "VDI", query.get("vdi"))
            rec = sim.db.get("VDI", vdi)
            if not sim.disks.has_data(rec["uuid"]):
                raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, rec["type"])
            changed = None
            refused = None
            base = None
            if query.get("base"):
                if fmt != "vhd":
                    raise XapiError("VDI_IO_ERROR", "base= needs format=vhd")
                base_ref = _lookup(sim, "VDI", query["base"])
                base = sim.db.get("VDI", base_ref)
                if base["type"] == "cbt_metadata":
                    # xapi attaches the base to dom0 only after the 200 headers went out
                    # (export_raw_vdi.ml localhost_handler, Sm_fs_ops.with_block_attached_device);
                    # VBD.create refuses a cbt_metadata VDI (xapi_vbd.ml create).
                    refused = ["VDI_INCOMPATIBLE_TYPE", base_ref, "cbt_metadata"]
                else:
                    changed = _changed_ranges(sim.disks.changed_blocks(base["uuid"], rec["uuid"]))
                    size = rec["virtual_size"]
                    changed = [(o, min(n, size - o)) for o, n in changed if o < size]
            sr, uuid = rec["SR"], rec["uuid"]
    except XapiError as e:
        _end(sim, auth)
        return _fail_early(handler, task, e.details)
    if _redirect_if_elsewhere(handler, {sr}):
        return _end(sim, auth)
    if refused:
        _send_stream_headers(handler, task, "application/vhd", uuid + ".vhd", http10=False)
        finish_task(sim, task, error=refused)      # the body stays empty; the connection closes
        return _end(sim, auth)
    reader = sim.disks.open_reader(uuid)

    def close():
        reader.close()
        _end(sim, auth)

    if fmt == "raw":
        _send_stream_headers(handler, task, "application/octet-stream", uuid + ".raw", http10=False)
        chunks = _raw_chunks(reader)
    else:
        _send_stream_headers(handler, task, "application/vhd", uuid + ".vhd", http10=False)
        parent = {"parent_uuid": uuidlib.UUID(base["uuid"]).bytes, "parent_name": base["uuid"] + ".vhd"} if base else {}
        chunks = write_vhd(reader, changed=changed, uuid=uuidlib.UUID(uuid).bytes, timestamp=int(time.time()), **parent)
    _run_stream(handler, task, Meter(sim, task, reader.size), chunks, close, query)


# -- uploads ---------------------------------------------------------------------------
class Body(io.RawIOBase):
    """The request body as a stream: Content-Length bytes, or until EOF without one."""

    def __init__(self, handler, meter: Meter):
        self.rfile = handler.rfile
        length = handler.headers.get("Content-Length")
        self.left = int(length) if length else None
        self.meter = meter

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        want = len(buffer)
        if self.left is not None:
            want = min(want, self.left)
        if want <= 0:
            return 0
        want = self.meter.allowance(want)
        data = self.rfile.read1(want) if hasattr(self.rfile, "read1") else self.rfile.read(want)
        if not data:
            return 0
        n = len(data)
        buffer[:n] = data
        if self.left is not None:
            self.left -= n
        self.meter.moved(n)
        return n


def _refuse_chunked(handler) -> bool:
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        handler.send_plain(403, "IMPORT_ERROR_CANNOT_HANDLE_CHUNKED")
        handler.close_connection = True
        return True
    return False


def _send_upload_headers(handler, task: str) -> None:
    # xapi answers 200 with the task id before it reads the body, then closes when done.
    handler.wfile.write(("HTTP/1.1 200 OK\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n"
                         "task-id: %s\r\ncontent-type: application/octet-stream\r\n\r\n" % task).encode())
    handler.close_connection = True


def import_vm(handler, query: dict) -> None:
    sim = handler.sim
    if _refuse_chunked(handler):
        return
    auth = authenticate(handler, query, "import")
    if auth is None:
        return
    task = _task_for(handler, auth, query, "VM import")
    try:
        with sim.db.lock:
            if query.get("sr_id"):
                sr = _lookup(sim, "SR", query["sr_id"])
            elif query.get("sr_uuid"):
                sr = _lookup(sim, "SR", query["sr_uuid"])
            else:
                sr = sim.db.get("pool", sim.pool_ref())["default_SR"]
                sim.db.get("SR", sr)
    except XapiError as e:
        _end(sim, auth)
        return _fail_early(handler, task, e.details)
    if _redirect_if_elsewhere(handler, {sr}):
        return _end(sim, auth)
    length = int(handler.headers.get("Content-Length") or 0)
    meter = Meter(sim, task, length)
    importer = Import(sim, sr, restore=query.get("restore") == "true", force=query.get("force") == "true")
    _send_upload_headers(handler, task)
    interval = start_http(handler, query)
    try:
        stream = open_decompressed(io.BufferedReader(Body(handler, meter), buffer_size=1 << 20))
        items = read_xva(stream, verify=not importer.force)
        first = next(items, None)
        if first is None or first.kind != "ova.xml":
            raise XapiError("IMPORT_ERROR", "the stream does not start with ova.xml")
        with sim.db.lock:
            importer.load(first.data)
        _write_blocks(sim, importer, items)
        with sim.db.lock:
            importer.finish(task)
        finish_task(sim, task, result=importer.vms)
    except Exception as e:
        error = e.details if isinstance(e, XapiError) else ["IMPORT_ERROR", str(e) or type(e).__name__]
        if not importer.force:
            with sim.db.lock:
                importer.undo()
        finish_task(sim, task, error=error)
    finally:
        sim.transfer_log.end(interval)
        _end(sim, auth)


def _write_blocks(sim, importer: Import, items) -> None:
    for item in items:
        if item.kind != "block":
            continue
        uuid = importer.vdi_uuid(item.ref)
        if uuid is None:
            raise XapiError("IMPORT_ERROR", "data for unknown VDI %s" % item.ref)
        if item.offset + len(item.data) > importer.vdi_sizes[item.ref]:
            raise XapiError("IMPORT_ERROR", "data past the end of VDI %s" % item.ref)
        if item.data.count(0) != len(item.data):  # fresh VDIs are zeros already: stay sparse
            sim.disks.write(uuid, item.offset, item.data)


def import_raw_vdi(handler, query: dict) -> None:
    sim = handler.sim
    if "Transfer-Encoding" in handler.headers:
        handler.send_plain(403, "Transfer-Encoding is not supported")
        handler.close_connection = True
        return
    auth = authenticate(handler, query, "import_raw_vdi")
    if auth is None:
        return
    fmt = query.get("format", "raw")
    task = _task_for(handler, auth, query, "import_raw_vdi")
    try:
        if fmt not in ("raw", "vhd"):
            raise XapiError("FORMAT_NOT_SUPPORTED", fmt)
        with sim.db.lock:
            vdi = _lookup(sim, "VDI", query.get("vdi"))
            rec = sim.db.get("VDI", vdi)
            if any(sim.db.get("VBD", v)["currently_attached"] for v in rec["VBDs"]):
                raise XapiError("VDI_IN_USE", vdi, "import_raw_vdi")
            sr, uuid, size = rec["SR"], rec["uuid"], rec["virtual_size"]
    except XapiError as e:
        _end(sim, auth)
        return _fail_early(handler, task, e.details)
    if _redirect_if_elsewhere(handler, {sr}):
        return _end(sim, auth)
    meter = Meter(sim, task, int(handler.headers.get("Content-Length") or size))
    _send_upload_headers(handler, task)
    interval = start_http(handler, query)
    try:
        body = io.BufferedReader(Body(handler, meter), buffer_size=1 << 20)
        if fmt == "raw":
            _write_raw(sim, uuid, size, body)
        else:
            for offset, data in read_vhd(body):
                if offset + len(data) > size:
                    raise XapiError("VDI_IO_ERROR", "VHD data past the end of the VDI")
                sim.disks.write(uuid, offset, data)
        with sim.db.lock:
            inv.refresh_vdi(sim, vdi)
            inv.refresh_sr(sim, sr)
        finish_task(sim, task, result=vdi)
    except XapiError as e:
        finish_task(sim, task, error=e.details)
    except Exception as e:
        finish_task(sim, task, error=["VDI_IO_ERROR", str(e) or type(e).__name__])
    finally:
        sim.transfer_log.end(interval)
        _end(sim, auth)


def _write_raw(sim, uuid: str, size: int, body) -> None:
    reader = sim.disks.open_reader(uuid)
    try:
        allocated = reader.allocated_extents()
    finally:
        reader.close()

    def holds_data(offset: int, length: int) -> bool:
        return any(o < offset + length and offset < o + n for o, n in allocated)

    pos = 0
    while True:
        data = body.read(1 << 20)
        if not data:
            break
        if pos + len(data) > size:
            raise XapiError("VDI_IO_ERROR", "more data than the VDI's size")
        # All-zero pieces over unallocated space need no write: keeps the disk sparse.
        if data.count(0) != len(data) or holds_data(pos, len(data)):
            sim.disks.write(uuid, pos, data)
        pos += len(data)

