"""Where a backup's bytes come from: a full XVA export, or the changed blocks of each disk.

Full: GET /export streams the VM as an XVA (optionally compressed by the host); ova.xml
goes into the manifest and the disk blocks into the store as they arrive.
Incremental: VDI.list_changed_blocks between the snapshot kept from the last backup and the
new one gives the changed 64 KiB blocks; they are read over NBD (VDI.get_nbd_info), or,
where the pool has no NBD network, from a VHD of the differences (/export_raw_vdi with
base=). Unchanged ranges keep the parent backup's chunks.
"""
import io
import logging
import tarfile
import time
from contextlib import contextmanager

import XenAPI

from xenpools.connection import PoolError

from ..formats.cbt import changed_bytes, changed_ranges
from ..formats.nbd import connect_from_nbd_info
from ..formats.vhd import read_vhd_stream
from ..formats.xva import XvaStreamReader, parse_ova_xml

log = logging.getLogger(__name__)
TASK_VERDICT_TIMEOUT = 120      # seconds for the host to close a task once its stream ended


def disk_key(userdevice: str) -> str:
    """A VM's disks are named by their VBD position, stable across snapshots and restores."""
    return f"vbd{userdevice}" if userdevice != "" else "suspend"


class ChainBroken(Exception):
    """The last backup's snapshot cannot serve as the base of an incremental backup."""


@contextmanager
def transfer(conn, label, method, path, query):
    """An HTTP transfer driven by a task of ours: yields the response; on success waits for
    the task's verdict, on failure cancels it and waits until the host let go of the VM (an
    export keeps it locked, and its snapshot cannot be deleted until then). The task never
    lingers either way."""
    xenapi = conn.xenapi
    task = xenapi.task.create(label, "sesamweb")
    try:
        response = conn.open_transfer(method, path, {**query, "task_id": task})
        try:
            yield response
        except BaseException:
            response.close()
            _cancel_and_wait(xenapi, task)
            raise
        response.close()
        conn.wait_task(task, timeout=TASK_VERDICT_TIMEOUT)
    finally:
        try:
            xenapi.task.destroy(task)
        except (XenAPI.Failure, PoolError):
            pass


def _cancel_and_wait(xenapi, task, timeout=30):
    try:
        xenapi.task.cancel(task)
    except (XenAPI.Failure, PoolError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if xenapi.task.get_status(task) != "pending":
                return
        except (XenAPI.Failure, PoolError):
            return
        time.sleep(0.2)


def stream_full_export(conn, export_ref, writer, reporter, *, compression="none", preserve_power_state=False):
    """Export the VM (or snapshot) as XVA into the writer; returns (ova.xml bytes, metadata)."""
    query = {"ref": export_ref, "use_compression": {"none": "false"}.get(compression, compression)}
    if preserve_power_state:
        query["preserve_power_state"] = "true"
    with transfer(conn, "sesamweb full export", "GET", "/export", query) as response:
        reader = XvaStreamReader(response, compression="auto")
        ova_xml = reader.ova_xml()
        meta = parse_ova_xml(ova_xml)
        disks = {d.ref: d for d in meta.disks()}
        reporter.set_total(sum(d.virtual_size for d in disks.values()))
        current_ref, current = None, None
        done = set()
        finished_bytes = 0          # virtual size of the disks already streamed
        for ref, offset, data in reader.blocks():
            if ref != current_ref:
                if current is not None:
                    current.finish()
                    done.add(current_ref)
                    finished_bytes += disks[current_ref].virtual_size
                current_ref, current = ref, writer.add_disk(disk_key(disks[ref].userdevice), disks[ref].virtual_size)
            current.write(offset, data)
            reporter.bytes_read(reader.bytes_read, finished_bytes + offset + len(data))
        if current is not None:
            current.finish()
            done.add(current_ref)
        for ref, disk in disks.items():     # a disk with no block in the stream is all zeros
            if ref not in done:
                writer.add_disk(disk_key(disk.userdevice), disk.virtual_size).finish()
        reporter.bytes_read(reader.bytes_read, sum(d.virtual_size for d in disks.values()))
    return ova_xml, meta


def export_metadata(conn, vm_ref):
    """ova.xml of a VM or snapshot without its disks (GET /export_metadata)."""
    with transfer(conn, "sesamweb metadata export", "GET", "/export_metadata",
                  {"ref": vm_ref, "export_snapshots": "false"}) as response:
        body = response.read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as archive:
        member = archive.next()
        if member is None or member.name != "ova.xml":
            raise ValueError("the metadata export holds no ova.xml")
        return archive.extractfile(member).read()


# sm's answers when its changed-block logs do not link the two snapshots (xapi-project/sm
# libs/sm/core/XE_SR_ERRORCODES.xml): 460 CBTChangedBlocksError ("unrelated": CBT was switched
# off and on again, or the log was lost after a host crash), 459 CBTMetadataInconsistent.
CBT_LOG_BROKEN = {"SR_BACKEND_FAILURE_460", "SR_BACKEND_FAILURE_459"}


def check_chain(xenapi, key, vdi_ref, link, parent_disk, *, nbd):
    """The base VDI of disk `key` for list_changed_blocks, or ChainBroken with the reason.
    nbd: whether this run reads the changes over NBD (else from a VHD delta against the base)."""
    try:
        base_ref = xenapi.VDI.get_by_uuid(link["vdi_uuid"])
    except XenAPI.Failure:
        raise ChainBroken(f"disk {key}: the snapshot kept from the last backup was deleted") from None
    source = xenapi.VDI.get_snapshot_of(vdi_ref)
    if not xenapi.VDI.get_cbt_enabled(source):
        raise ChainBroken(f"disk {key}: changed block tracking was disabled on the VM's disk")
    size = int(xenapi.VDI.get_virtual_size(vdi_ref))
    if size != parent_disk.virtual_size:
        raise ChainBroken(f"disk {key}: the disk was resized ({parent_disk.virtual_size} -> {size} bytes)")
    if not nbd and xenapi.VDI.get_type(base_ref) == "cbt_metadata":
        # xapi attaches the base of /export_raw_vdi?base= to dom0, which it refuses for a
        # data-destroyed VDI (VDI_INCOMPATIBLE_TYPE after the headers: an empty body).
        raise ChainBroken(f"disk {key}: the snapshot kept from the last backup holds only change-tracking "
                          "data (its blocks were released for NBD reads) and the pool has no NBD network now")
    return base_ref


def changed_block_maps(xenapi, disks, bases):
    """{key: base64 bitmap} of the blocks changed since each base (VDI.list_changed_blocks), or
    ChainBroken when the pool's change log no longer links the base to the new snapshot."""
    maps = {}
    for key, vdi_ref in sorted(disks.items()):
        try:
            maps[key] = xenapi.VDI.list_changed_blocks(bases[key], vdi_ref)
        except XenAPI.Failure as exc:
            if not exc.details or exc.details[0] not in CBT_LOG_BROKEN:
                raise
            raise ChainBroken(f"disk {key}: the pool's change log was reset since the last backup (change "
                              "tracking was switched off and on, or its log lost in a host crash)") from exc
    return maps


def nbd_mode(xenapi):
    """True (TLS) / False (cleartext) for the pool's NBD networks; None when it has none."""
    purposes = {p for network in xenapi.network.get_all_records().values() for p in network["purpose"]}
    if "nbd" in purposes:
        return True
    if "insecure_nbd" in purposes:
        return False
    return None


def stream_changed_blocks(conn, disks, bases, bitmaps, parent_manifest, writer, reporter):
    """Write each disk's changed blocks on top of the parent backup's chunks.

    disks: {key: snapshot VDI ref}; bases: {key: base VDI ref} (from check_chain); bitmaps:
    {key: list_changed_blocks answer} (from changed_block_maps). Every NBD connection is closed
    before this returns or raises (each holds a dom0 VBD that blocks deleting the snapshot).
    Returns {"bytes_changed": ..., "transport": "nbd"|"vhd"}.
    """
    xenapi = conn.xenapi
    tls = nbd_mode(xenapi)
    plans = []
    for key, vdi_ref in sorted(disks.items()):
        size = int(xenapi.VDI.get_virtual_size(vdi_ref))
        bitmap = bitmaps[key]
        plans.append((key, vdi_ref, size, changed_ranges(bitmap, size), changed_bytes(bitmap, size)))
    reporter.set_total(sum(plan[4] for plan in plans))
    transport = "nbd" if tls is not None else "vhd"
    read = 0
    for key, vdi_ref, size, ranges, _ in plans:
        parent_chunks = parent_manifest.disk(key).chunks
        disk_writer = writer.add_disk(key, size, parent_chunks=parent_chunks)
        if ranges and transport == "nbd":
            with connect_from_nbd_info(xenapi.VDI.get_nbd_info(vdi_ref), tls=tls) as client:
                for offset, data in client.read_many(ranges):
                    disk_writer.write(offset, data)
                    read += len(data)
                    reporter.bytes_read(read, read)
        elif ranges:
            read = _read_vhd_delta(conn, vdi_ref, bases[key], disk_writer, reporter, read)
        disk_writer.finish()
    return {"bytes_changed": sum(plan[4] for plan in plans), "transport": transport}


def _read_vhd_delta(conn, vdi_ref, base_ref, disk_writer, reporter, read):
    with transfer(conn, "sesamweb VHD delta export", "GET", "/export_raw_vdi",
                  {"vdi": vdi_ref, "format": "vhd", "base": base_ref}) as response:
        _size, pieces = read_vhd_stream(response)
        for offset, data in pieces:
            disk_writer.write(offset, data)
            read += len(data)
            reporter.bytes_read(read, read)
    return read
