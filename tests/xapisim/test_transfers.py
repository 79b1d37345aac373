"""HTTP transfers (/export, /import, /export_raw_vdi, /import_raw_vdi, /export_metadata) with
plain HTTP, checked with the project's XVA/VHD readers and with xva-img, qemu-img, nbdcopy."""

import base64
import gzip
import http.client
import io
import os
import shutil
import subprocess
import tarfile
import time
import urllib.parse
import xmlrpc.client

import pytest
import xxhash
import XenAPI
import zstandard

from xapisim.vhd import read_vhd
from xapisim.xva import open_decompressed, read_xva

MiB = 1 << 20


def need_tool(name):
    if shutil.which(name) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI")
        pytest.skip(f"{name} is not installed")


class Client:
    """Plain HTTP against one simulator host, with a XenAPI session for the query."""

    def __init__(self, sim, session):
        self.sim = sim
        self.session = session
        self.x = session.xenapi

    def request(self, method, path, params=None, body=None, headers=None, host="127.0.0.1", auth=True):
        params = dict(params or {})
        if auth:
            params.setdefault("session_id", self.session.handle)
        conn = http.client.HTTPConnection(host, self.sim.port, timeout=60)
        conn.request(method, path + "?" + urllib.parse.urlencode(params), body=body, headers=headers or {})
        return conn.getresponse()

    def get(self, path, params=None, **kw) -> tuple[http.client.HTTPResponse, bytes]:
        reply = self.request("GET", path, params, **kw)
        return reply, reply.read()

    def raw(self, vdi_uuid) -> bytes:
        reply, body = self.get("/export_raw_vdi", {"vdi": vdi_uuid, "format": "raw"})
        assert reply.status == 200
        return body

    def put(self, path, params, body: bytes, **kw):
        reply = self.request("PUT", path, params, body=body, headers={"Content-Length": str(len(body))}, **kw)
        reply.read()
        return reply


@pytest.fixture
def client(sim):
    return Client(sim, sim.session())


def vm_named(x, name):
    return x.VM.get_by_name_label(name)[0]


def disk_vdis(x, vm):
    out = []
    for vbd in x.VM.get_VBDs(vm):
        rec = x.VBD.get_record(vbd)
        if rec["type"] == "Disk" and rec["VDI"] != "OpaqueRef:NULL":
            out.append(rec["VDI"])
    return out


def parse_ova(data: bytes) -> dict:
    doc = "<methodResponse><params><param>%s</param></params></methodResponse>" % data.decode()
    return xmlrpc.client.loads(doc)[0][0]


def unpack_xva(stream) -> tuple[dict, dict[str, bytes]]:
    """(ova.xml as dict, {VDI uuid: bytes}) from a (possibly compressed) XVA stream."""
    items = read_xva(open_decompressed(stream))
    first = next(items)
    ova = parse_ova(first.data)
    vdis = {o["id"]: o["snapshot"] for o in ova["objects"] if o["class"] == "VDI"}
    disks = {ref: bytearray(int(s["virtual_size"])) for ref, s in vdis.items()}
    for item in items:
        disks[item.ref][item.offset:item.offset + len(item.data)] = item.data
    return ova, {vdis[ref]["uuid"]: bytes(data) for ref, data in disks.items()}


def objects(ova, cls):
    return [o["snapshot"] for o in ova["objects"] if o["class"] == cls]


@pytest.mark.parametrize("compression", ["false", "true", "zstd"])
def test_export_streams_an_xva_equal_to_the_raw_disks(sim, client, compression):
    x = client.x
    vm = vm_named(x, "test-vm-4")
    sim.control.guest_write(20, vm="test-vm-4")
    reply = client.request("GET", "/export", {"uuid": x.VM.get_uuid(vm), "use_compression": compression})
    assert reply.status == 200 and reply.version == 10
    assert reply.getheader("Content-Length") is None
    task = reply.getheader("task-id")
    body = reply.read()
    if compression == "true":
        assert body[:2] == b"\x1f\x8b"
    elif compression == "zstd":
        assert body[:4] == b"\x28\xb5\x2f\xfd"
    ova, disks = unpack_xva(io.BytesIO(body))
    assert objects(ova, "VM")[0]["uuid"] == x.VM.get_uuid(vm)
    assert ova["version"]["export_vsn"] == "2"
    for vdi in disk_vdis(x, vm):
        uuid = x.VDI.get_uuid(vdi)
        assert disks[uuid] == client.raw(uuid)
    assert x.task.get_status(task) == "success"
    assert x.VM.get_current_operations(vm) == {}


def test_a_running_vm_is_exported_through_a_snapshot_only(client):
    """export.ml lock_vm checks the export operation (xapi_vm_lifecycle.ml: halted, suspended;
    report_power_state_error joins them with ", ")."""
    x = client.x
    vm = vm_named(x, "test-vm-1")
    reply, _ = client.get("/export", {"ref": vm})
    assert reply.status == 500
    rec = x.task.get_record(reply.getheader("task-id"))
    assert rec["error_info"] == ["VM_BAD_POWER_STATE", vm, "halted, suspended", "running"]


def test_export_of_a_running_vm_snapshot_is_a_halted_plain_vm(client):
    x = client.x
    snap = x.VM.snapshot(vm_named(x, "test-vm-1"), "backup")
    _, body = client.get("/export", {"ref": snap})
    ova, _ = unpack_xva(io.BytesIO(body))
    (vm,) = objects(ova, "VM")
    assert vm["is_a_snapshot"] is False and vm["snapshot_of"] == "OpaqueRef:NULL"
    assert vm["power_state"] == "Halted"
    assert vm["snapshot_time"].value == "19700101T00:00:00Z"
    (new,) = import_xva(client, body)
    assert x.VM.get_is_a_template(new) is True  # xapi keeps is_a_template; clients reset it
    x.VM.set_is_a_template(new, False)
    x.VM.start(new, False, False)


def test_8_x_exports_carry_xxhash_members(client):
    x = client.x
    _, body = client.get("/export", {"ref": vm_named(x, "test-vm-2")})
    checked = 0
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        members = tar.getmembers()
        assert members[0].name == "ova.xml"
        for data_member, sum_member in zip(members[1::2], members[2::2]):
            assert sum_member.name == data_member.name + ".xxhash"
            data = tar.extractfile(data_member).read()
            assert tar.extractfile(sum_member).read().decode() == "%016X" % xxhash.xxh64_intdigest(data)
            checked += 1
    assert checked >= 2


def test_7_x_exports_unpack_with_xva_img_to_the_raw_disk(sim, client, tmp_path):
    need_tool("xva-img")
    sim.control.set_product_version("7.1.2")
    x = client.x
    vm = vm_named(x, "test-vm-2")
    sim.control.guest_write(10, vm="test-vm-2")
    _, body = client.get("/export", {"ref": vm})
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
        assert any(n.endswith(".checksum") for n in names) and not any(n.endswith(".xxhash") for n in names)
        tar.extractall(tmp_path / "xva", filter="data")
    ova = parse_ova((tmp_path / "xva" / "ova.xml").read_bytes())
    (vdi_obj,) = [o for o in ova["objects"] if o["class"] == "VDI"]
    out = tmp_path / "disk.raw"
    subprocess.run(["xva-img", "disk-export", str(tmp_path / "xva" / vdi_obj["id"]), str(out)], check=True,
                   capture_output=True)
    assert out.read_bytes() == client.raw(vdi_obj["snapshot"]["uuid"])


def test_an_xva_packed_by_xva_img_imports_and_exports_back_identical(sim, client, tmp_path):
    need_tool("xva-img")
    x = client.x
    vm = vm_named(x, "test-vm-2")
    _, body = client.get("/export", {"ref": vm})
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        ova_xml = tar.extractfile("ova.xml").read()
    ova = parse_ova(ova_xml)
    (vdi_obj,) = [o for o in ova["objects"] if o["class"] == "VDI"]
    size = int(vdi_obj["snapshot"]["virtual_size"])
    disk = bytearray(os.urandom(size))
    disk[MiB:3 * MiB] = bytes(2 * MiB)
    (tmp_path / "disk.raw").write_bytes(disk)
    (tmp_path / "ova.xml").write_bytes(ova_xml)
    (tmp_path / vdi_obj["id"]).mkdir()
    subprocess.run(["xva-img", "disk-import", vdi_obj["id"], "disk.raw"], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run(["xva-img", "package", "vm.xva", "./ova.xml", "./" + vdi_obj["id"]], cwd=tmp_path, check=True,
                   capture_output=True)
    reply = client.put("/import", {}, (tmp_path / "vm.xva").read_bytes())
    assert reply.status == 200
    task = reply.getheader("task-id")
    rec = x.task.get_record(task)
    assert rec["status"] == "success", rec["error_info"]
    (new_vm,) = xmlrpc.client.loads("<methodResponse><params><param>%s</param></params></methodResponse>"
                                    % rec["result"])[0][0]
    (new_vdi,) = disk_vdis(x, new_vm)
    assert client.raw(x.VDI.get_uuid(new_vdi)) == bytes(disk)


def rebuild_xva(body: bytes, edit_ova) -> bytes:
    """The same XVA with ova.xml passed through ``edit_ova`` (tar rewritten by Python)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(body)) as src, tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "ova.xml":
                data = edit_ova(data)
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out.getvalue()


def import_xva(client, body, **params):
    """Import and return the new VM refs. A failing import may close the connection before
    the body is sent (as xapi does), so the outcome is read from our own task."""
    task = client.x.task.create("import", "test import")
    try:
        reply = client.put("/import", {**params, "task_id": task}, body)
        assert reply.status == 200 and reply.getheader("task-id") == task
    except (BrokenPipeError, ConnectionResetError):
        pass
    rec = client.x.task.get_record(task)
    if rec["status"] != "success":
        raise XenAPI.Failure(rec["error_info"])
    return xmlrpc.client.loads("<methodResponse><params><param>%s</param></params></methodResponse>"
                               % rec["result"])[0][0]


def test_import_without_restore_gives_new_identities(client):
    x = client.x
    vm = vm_named(x, "test-vm-2")
    _, body = client.get("/export", {"ref": vm, "use_compression": "zstd"})
    (new,) = import_xva(client, body)
    old_rec, new_rec = x.VM.get_record(vm), x.VM.get_record(new)
    assert new_rec["uuid"] != old_rec["uuid"]
    assert new_rec["other_config"]["mac_seed"] != old_rec["other_config"]["mac_seed"]
    assert new_rec["other_config"]["import_task"].startswith("OpaqueRef:")
    assert x.VIF.get_MAC(new_rec["VIFs"][0]) != x.VIF.get_MAC(old_rec["VIFs"][0])
    assert x.VIF.get_network(new_rec["VIFs"][0]) == x.VIF.get_network(old_rec["VIFs"][0])
    assert x.VM_guest_metrics.get_os_version(new_rec["guest_metrics"])["distro"] == "windows"
    (old_vdi,), (new_vdi,) = disk_vdis(x, vm), disk_vdis(x, new)
    assert x.VDI.get_uuid(new_vdi) != x.VDI.get_uuid(old_vdi)
    assert client.raw(x.VDI.get_uuid(new_vdi)) == client.raw(x.VDI.get_uuid(old_vdi))


def test_import_into_a_chosen_sr(client):
    x = client.x
    local = [s for s in x.SR.get_all() if x.SR.get_name_label(s).startswith("Local storage on xcp-host-1")][0]
    _, body = client.get("/export", {"ref": vm_named(x, "test-vm-2")})
    (new,) = import_xva(client, body, sr_id=local)
    assert [x.VDI.get_SR(v) for v in disk_vdis(x, new)] == [local]


def test_restore_keeps_uuids_and_macs_under_xapis_same_uuid_rules(sim, client):
    x = client.x
    vm = vm_named(x, "test-vm-2")
    old = x.VM.get_record(vm)
    old_mac = x.VIF.get_MAC(old["VIFs"][0])
    old_vbd_uuid = x.VBD.get_uuid(old["VBDs"][0])
    _, body = client.get("/export", {"ref": vm, "use_compression": "true"})
    with pytest.raises(XenAPI.Failure) as err:
        import_xva(client, body, restore="true")
    assert err.value.details[0] == "VM_TO_IMPORT_IS_NOT_NEWER_VERSION"
    (new,) = import_xva(client, body, restore="true", force="true")
    rec = x.VM.get_record(new)
    assert rec["uuid"] == old["uuid"] and new != vm
    assert rec["other_config"]["mac_seed"] == old["other_config"]["mac_seed"]
    assert x.VIF.get_MAC(rec["VIFs"][0]) == old_mac
    assert x.VBD.get_uuid(rec["VBDs"][0]) == old_vbd_uuid
    x.VM.start(new, False, False)
    with pytest.raises(XenAPI.Failure) as err:
        import_xva(client, body, restore="true")
    assert err.value.details == ["VM_BAD_POWER_STATE", new, "Halted", "Running"]


def test_a_forced_restore_over_a_running_vm_skips_it_and_leaves_its_disks_behind(client):
    """import.ml VMHandler.precheck: with full_restore, a VM of the same UUID that is not
    halted gives VM_BAD_POWER_STATE [vm, "Halted", "Running"] (Record_util
    .vm_power_state_to_string, capitalised), or with force is skipped ("Forced import skipping
    VM ... as VM to replace was not halted"): it keeps running, the import succeeds with no VM,
    and the VDIs created before the VM handler ran stay behind unattached."""
    x = client.x
    vm = vm_named(x, "test-vm-1")                        # running
    snap = x.VM.snapshot(vm, "to export")
    _, body = client.get("/export", {"ref": snap})
    body = rebuild_xva(body, lambda ova: ova.replace(
        x.VM.get_uuid(snap).encode(), x.VM.get_uuid(vm).encode()))   # an export of the VM itself
    vdis_before = set(x.VDI.get_all())
    with pytest.raises(XenAPI.Failure) as err:
        import_xva(client, body, restore="true")
    assert err.value.details == ["VM_BAD_POWER_STATE", vm, "Halted", "Running"]
    assert set(x.VDI.get_all()) == vdis_before           # a failed import is cleaned up

    assert import_xva(client, body, restore="true", force="true") == []
    assert x.VM.get_power_state(vm) == "Running"
    left = set(x.VDI.get_all()) - vdis_before
    assert len(left) == 1 and x.VDI.get_VBDs(left.pop()) == []


def test_networks_are_matched_by_name_then_bridge_else_created(client):
    x = client.x
    vm = vm_named(x, "test-vm-2")
    network = x.VIF.get_network(x.VM.get_VIFs(vm)[0])
    name, bridge = x.network.get_name_label(network), x.network.get_bridge(network)
    _, body = client.get("/export", {"ref": vm})
    by_bridge = rebuild_xva(body, lambda ova: ova.replace(name.encode(), b"Renamed network"))
    (new,) = import_xva(client, by_bridge)
    assert x.VIF.get_network(x.VM.get_VIFs(new)[0]) == network
    unknown = rebuild_xva(body, lambda ova: ova.replace(name.encode(), b"Lab net").replace(bridge.encode(), b"xenbr9"))
    (new,) = import_xva(client, unknown)
    created = x.VIF.get_network(x.VM.get_VIFs(new)[0])
    assert created != network and x.network.get_name_label(created) == "Lab net"


def test_import_refuses_http_chunked_encoding(client):
    conn = http.client.HTTPConnection("127.0.0.1", client.sim.port, timeout=30)
    conn.request("PUT", "/import?session_id=" + client.session.handle, body=iter([b"x" * 1024]),
                 headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
    reply = conn.getresponse()
    assert reply.status == 403
    assert b"IMPORT_ERROR_CANNOT_HANDLE_CHUNKED" in reply.read()


def test_import_without_content_length_reads_to_eof(client):
    x = client.x
    _, body = client.get("/export", {"ref": vm_named(x, "test-vm-2")})
    before = len(x.VM.get_all())
    sock = __import__("socket").create_connection(("127.0.0.1", client.sim.port))
    sock.sendall(("PUT /import?session_id=%s HTTP/1.1\r\nHost: x\r\n\r\n" % client.session.handle).encode())
    sock.sendall(body)
    sock.shutdown(1)  # EOF ends the body
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200 OK") and b"task-id: OpaqueRef:" in reply
    assert len(x.VM.get_all()) == before + 1


def test_a_failed_import_leaves_nothing_behind(client):
    x = client.x
    _, body = client.get("/export", {"ref": vm_named(x, "test-vm-4")})
    counts = {cls: len(getattr(x, cls).get_all()) for cls in ("VM", "VDI", "VBD", "VIF")}
    broken = bytearray(body)
    broken[len(body) // 2] ^= 0xFF  # a flipped byte in some block fails its checksum
    with pytest.raises(XenAPI.Failure):
        import_xva(client, bytes(broken))
    assert {cls: len(getattr(x, cls).get_all()) for cls in counts} == counts


def test_http_transfers_need_credentials(client):
    x = client.x
    vdi = x.VDI.get_uuid(disk_vdis(x, vm_named(x, "test-vm-2"))[0])
    reply, _ = client.get("/export_raw_vdi", {"vdi": vdi}, auth=False)
    assert reply.status == 401 and reply.getheader("WWW-Authenticate").startswith("Basic realm=")
    basic = base64.b64encode(b"root:demo").decode()
    reply, body = client.get("/export_raw_vdi", {"vdi": vdi}, auth=False, headers={"Authorization": "Basic " + basic})
    assert reply.status == 200 and body == client.raw(vdi)
    reply, _ = client.get("/export_raw_vdi", {"vdi": vdi}, auth=False,
                          headers={"Cookie": "session_id=" + client.session.handle})
    assert reply.status == 200


def test_a_callers_task_is_driven_to_completion(client):
    x = client.x
    task = x.task.create("export", "console export")
    reply, _ = client.get("/export", {"ref": vm_named(x, "test-vm-2"), "task_id": task})
    assert reply.getheader("task-id") == task
    rec = x.task.get_record(task)
    assert rec["status"] == "success" and rec["progress"] == 1.0


def test_a_member_redirects_to_the_host_that_sees_a_local_sr(sim, client):
    x = client.x
    local = [s for s in x.SR.get_all() if x.SR.get_name_label(s) == "Local storage on xcp-host-2"][0]
    made = sim.control.create_vm("local-vm", [8 * MiB], sr=x.SR.get_uuid(local), written_blocks=4)
    reply, _ = client.get("/export", {"ref": made["ref"]})
    assert reply.status == 302
    location = reply.getheader("Location")
    assert location.startswith("http://127.0.0.2:%d/export?" % sim.port) and "session_id=" in location
    reply, body = client.get("/export", {"ref": made["ref"]}, host="127.0.0.2")
    assert reply.status == 200
    _, disks = unpack_xva(io.BytesIO(body))
    reply, raw = client.get("/export_raw_vdi", {"vdi": made["vdis"][0]}, host="127.0.0.2")
    assert disks[made["vdis"][0]] == raw


def test_vhd_export_passes_qemu_img_and_converts_to_the_raw_disk(sim, client, tmp_path):
    need_tool("qemu-img")
    x = client.x
    vdi = x.VDI.get_uuid(disk_vdis(x, vm_named(x, "test-vm-4"))[0])
    reply, vhd = client.get("/export_raw_vdi", {"vdi": vdi, "format": "vhd"})
    assert reply.status == 200 and reply.getheader("content-type") == "application/vhd"
    (tmp_path / "d.vhd").write_bytes(vhd)
    check = subprocess.run(["qemu-img", "check", "-f", "vpc", str(tmp_path / "d.vhd")], capture_output=True, text=True)
    if check.returncode == 63 and "does not support checks" in check.stderr:
        # qemu-img 7.2 has no consistency check for vpc: opening it with `info` must work.
        subprocess.run(["qemu-img", "info", "-f", "vpc", str(tmp_path / "d.vhd")], check=True, capture_output=True)
    else:
        assert check.returncode == 0, check.stdout + check.stderr
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(tmp_path / "d.vhd"), str(tmp_path / "d.raw")],
                   check=True, capture_output=True)
    assert (tmp_path / "d.raw").read_bytes() == client.raw(vdi)


def test_a_base_vhd_applied_on_the_base_gives_the_newer_disk(sim, client):
    x = client.x
    vm = vm_named(x, "test-vm-4")
    (vdi,) = disk_vdis(x, vm)
    x.VDI.enable_cbt(vdi)
    base = disk_vdis(x, x.VM.snapshot(vm, "base"))[0]
    sim.control.guest_write(6, vdi=x.VDI.get_uuid(vdi))
    newer = disk_vdis(x, x.VM.snapshot(vm, "newer"))[0]
    disk = bytearray(client.raw(x.VDI.get_uuid(base)))
    _, delta = client.get("/export_raw_vdi", {"vdi": newer, "format": "vhd", "base": base})
    ranges = 0
    for offset, data in read_vhd(io.BytesIO(delta)):
        disk[offset:offset + len(data)] = data
        ranges += len(data)
    assert bytes(disk) == client.raw(x.VDI.get_uuid(newer))
    assert ranges < len(disk)


def test_import_raw_vdi_writes_raw_and_vhd(client):
    x = client.x
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    target = x.VDI.create({"name_label": "target", "SR": sr, "virtual_size": str(8 * MiB), "type": "user",
                           "sharable": False, "read_only": False, "other_config": {}})
    data = os.urandom(MiB) + bytes(6 * MiB) + os.urandom(MiB)
    reply = client.put("/import_raw_vdi", {"vdi": target, "format": "raw"}, data)
    assert x.task.get_status(reply.getheader("task-id")) == "success"
    assert client.raw(x.VDI.get_uuid(target)) == data
    source = x.VDI.get_uuid(disk_vdis(x, vm_named(x, "test-vm-1"))[0])
    _, vhd = client.get("/export_raw_vdi", {"vdi": source, "format": "vhd"})
    other = x.VDI.create({"name_label": "from vhd", "SR": sr, "virtual_size": str(8 * MiB), "type": "user",
                          "sharable": False, "read_only": False, "other_config": {}})
    reply = client.put("/import_raw_vdi", {"vdi": other, "format": "vhd"}, vhd)
    assert x.task.get_status(reply.getheader("task-id")) == "success"
    assert client.raw(x.VDI.get_uuid(other)) == client.raw(source)


def test_export_metadata_is_a_tar_with_only_ova_xml(client):
    x = client.x
    vm = vm_named(x, "test-vm-2")
    x.VM.snapshot(vm, "kept")
    reply, body = client.get("/export_metadata", {"ref": vm})
    assert int(reply.getheader("Content-Length")) == len(body)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.getnames() == ["ova.xml"]
        ova = parse_ova(tar.extractfile("ova.xml").read())
    vms = objects(ova, "VM")
    assert len(vms) == 2 and any(v["is_a_snapshot"] for v in vms)


def test_a_dropped_transfer_is_a_short_read_and_a_failed_task(sim, client):
    x = client.x
    vdi = x.VDI.get_uuid(disk_vdis(x, vm_named(x, "test-vm-2"))[0])
    sim.control.drop_transfer(3 * MiB)
    reply = client.request("GET", "/export_raw_vdi", {"vdi": vdi})
    received = b""
    try:
        while chunk := reply.read(65536):
            received += chunk
    except (ConnectionError, http.client.IncompleteRead):
        pass
    assert len(received) == 3 * MiB
    rec = x.task.get_record(reply.getheader("task-id"))
    assert rec["status"] == "failure" and rec["error_info"][0] == "VDI_IO_ERROR"
    assert len(client.raw(vdi)) == 16 * MiB  # the fault hit one transfer only


def test_a_rate_limited_transfer_reports_progress_and_completes(sim, client):
    x = client.x
    vdi = x.VDI.get_uuid(disk_vdis(x, vm_named(x, "test-vm-2"))[0])
    sim.control.rate_limit(8 * MiB)
    reply = client.request("GET", "/export_raw_vdi", {"vdi": vdi})
    task = reply.getheader("task-id")
    first = reply.read(10 * MiB)
    progress = float(x.task.get_progress(task))
    rest = reply.read()
    sim.control.rate_limit(0)
    assert 0 < progress < 1
    assert first + rest == client.raw(vdi)
    assert x.task.get_status(task) == "success"


def test_nbdcopy_reads_the_same_bytes_as_the_raw_export(sim, client, tmp_path):
    need_tool("nbdcopy")
    x = client.x
    vm = vm_named(x, "test-vm-4")
    snap_vdi = disk_vdis(x, x.VM.snapshot(vm, "nbd"))[0]
    infos = x.VDI.get_nbd_info(snap_vdi)
    assert {i["address"] for i in infos} == {"127.0.0.1", "127.0.0.2"}
    info = [i for i in infos if i["address"] == "127.0.0.1"][0]
    assert info["exportname"] == "/%s?session_id=%s" % (x.VDI.get_uuid(snap_vdi), client.session.handle)
    assert "BEGIN CERTIFICATE" in info["cert"]
    uri = "nbd://%s:%s/%s" % (info["address"], info["port"], urllib.parse.quote(info["exportname"], safe="/"))
    out = tmp_path / "nbd.raw"
    subprocess.run(["nbdcopy", uri, str(out)], check=True, capture_output=True, timeout=60)
    assert out.read_bytes() == client.raw(x.VDI.get_uuid(snap_vdi))


def test_gzip_and_zstd_exports_import_back(client):
    x = client.x
    vm = vm_named(x, "test-vm-2")
    for compression, check in (("true", gzip.decompress), ("zstd", None)):
        _, body = client.get("/export", {"ref": vm, "use_compression": compression})
        if check:
            check(body)
        else:
            zstandard.ZstdDecompressor().decompressobj().decompress(body)
        (new,) = import_xva(client, body)
        assert client.raw(x.VDI.get_uuid(disk_vdis(x, new)[0])) == client.raw(x.VDI.get_uuid(disk_vdis(x, vm)[0]))


def test_an_import_bigger_than_the_free_space_fails_with_sr_full(sim, client):
    x = client.x
    _, body = client.get("/export", {"ref": vm_named(x, "test-vm-4")})
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    sim.control.fill_sr(x.SR.get_uuid(sr), MiB)
    vms = len(x.VM.get_all())
    with pytest.raises(XenAPI.Failure) as err:
        import_xva(client, body)
    assert err.value.details == ["SR_FULL", str(64 * MiB), str(MiB)]
    assert len(x.VM.get_all()) == vms


def test_xmlrpc_connections_are_kept_alive(sim):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    body = xmlrpc.client.dumps(("root", "demo"), "session.login_with_password").encode()
    for _ in range(3):
        conn.request("POST", "/", body=body, headers={"Content-Type": "text/xml"})
        reply = conn.getresponse()
        assert reply.status == 200 and reply.getheader("Connection") != "close"
        assert xmlrpc.client.loads(reply.read())[0][0]["Status"] == "Success"
    assert conn.sock is not None


def test_nbd_purpose_serves_tls_with_the_host_certificate(client, tmp_path):
    need_tool("nbdcopy")
    x = client.x
    network = [n for n in x.network.get_all() if "insecure_nbd" in x.network.get_purpose(n)][0]
    x.network.add_purpose(network, "nbd")
    x.network.remove_purpose(network, "insecure_nbd")
    vdi = disk_vdis(x, x.VM.snapshot(vm_named(x, "test-vm-2"), "tls nbd"))[0]
    info = [i for i in x.VDI.get_nbd_info(vdi) if i["address"] == "127.0.0.1"][0]
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "ca-cert.pem").write_text(info["cert"])
    base = "%s:%s/%s" % (info["address"], info["port"], urllib.parse.quote(info["exportname"], safe="/"))
    plain = subprocess.run(["nbdcopy", "nbd://" + base, str(tmp_path / "plain.raw")], capture_output=True, timeout=60)
    assert plain.returncode != 0
    subprocess.run(["nbdcopy", "nbds://%s?tls-certificates=%s" % (base, tmp_path / "ca"), str(tmp_path / "tls.raw")],
                   check=True, capture_output=True, timeout=60)
    assert (tmp_path / "tls.raw").read_bytes() == client.raw(x.VDI.get_uuid(vdi))


def test_cancelling_the_task_stops_a_transfer(sim, client):
    x = client.x
    vdi = x.VDI.get_uuid(disk_vdis(x, vm_named(x, "test-vm-2"))[0])
    sim.control.rate_limit(4 * MiB)
    task = x.task.create("export", "to be cancelled")
    reply = client.request("GET", "/export_raw_vdi", {"vdi": vdi, "task_id": task})
    received = reply.read(MiB)
    x.task.cancel(task)
    try:
        while chunk := reply.read(65536):
            received += chunk
    except (ConnectionError, http.client.IncompleteRead):
        pass
    sim.control.rate_limit(0)
    assert len(received) < 16 * MiB
    rec = x.task.get_record(task)
    assert rec["status"] == "cancelled" and rec["error_info"] == ["TASK_CANCELLED", task]


def test_restoring_a_deleted_vm_keeps_its_identity_and_gives_fresh_vdi_uuids(sim, client):
    x = client.x
    vm = vm_named(x, "test-vm-4")
    old = x.VM.get_record(vm)
    old_vdi_uuid = x.VDI.get_uuid(disk_vdis(x, vm)[0])
    old_mac = x.VIF.get_MAC(old["VIFs"][0])
    old_vif_uuid = x.VIF.get_uuid(old["VIFs"][0])
    _, body = client.get("/export", {"ref": vm, "use_compression": "zstd"})
    sim.control.delete_vm(vm=old["uuid"])
    (new,) = import_xva(client, body, restore="true")
    rec = x.VM.get_record(new)
    assert rec["uuid"] == old["uuid"]
    assert x.VIF.get_MAC(rec["VIFs"][0]) == old_mac
    assert x.VIF.get_uuid(rec["VIFs"][0]) == old_vif_uuid
    assert x.VDI.get_uuid(disk_vdis(x, new)[0]) != old_vdi_uuid


def test_a_checkpoint_exported_with_its_power_state_imports_suspended(client):
    x = client.x
    checkpoint = x.VM.checkpoint(vm_named(x, "test-vm-1"), "cp")
    _, body = client.get("/export", {"ref": checkpoint, "preserve_power_state": "true"})
    ova, disks = unpack_xva(io.BytesIO(body))
    image = x.VDI.get_uuid(x.VM.get_suspend_VDI(checkpoint))
    assert disks[image] == client.raw(image)
    (new,) = import_xva(client, body)
    rec = x.VM.get_record(new)
    assert rec["power_state"] == "Suspended"
    assert x.VDI.get_type(rec["suspend_VDI"]) == "suspend"
    assert client.raw(x.VDI.get_uuid(rec["suspend_VDI"])) == client.raw(image)


def _ova_version(body: bytes) -> dict:
    from xapisim.xmlrpc import parse_value
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        ova = tar.extractfile("ova.xml").read().decode()
    return parse_value(ova.strip())["version"]


def test_an_export_carries_the_xapi_build_and_an_older_build_refuses_it(sim, client):
    """importexport.ml rpc_of_version writes Xapi_version.xapi_version_major/minor (the xapi
    build, 24.39 on XCP-ng 8.3, 1.249 on 8.2), not the API version 2.21; assert_compatible
    refuses an export from a newer build with IMPORT_INCOMPATIBLE_VERSION [], force or not
    (it runs before anything else in stream_import), and accepts one from an older build."""
    x = client.x
    _, body = client.get("/export", {"ref": vm_named(x, "test-vm-2")})
    version = _ova_version(body)
    assert (int(version["xapi_major"]), int(version["xapi_minor"])) == (24, 39)
    sim.control.set_product_version("8.2.1")
    vdis_before = set(x.VDI.get_all())
    for force in ("false", "true"):
        with pytest.raises(XenAPI.Failure) as err:
            import_xva(client, body, force=force)
        assert err.value.details == ["IMPORT_INCOMPATIBLE_VERSION"]
    assert set(x.VDI.get_all()) == vdis_before
    older = rebuild_xva(body, lambda ova: ova.replace(
        b"<name>xapi_major</name><value>24</value>", b"<name>xapi_major</name><value>1</value>").replace(
        b"<name>xapi_minor</name><value>39</value>", b"<name>xapi_minor</name><value>249</value>"))
    assert (int(_ova_version(older)["xapi_major"]), int(_ova_version(older)["xapi_minor"])) == (1, 249)
    (new,) = import_xva(client, older)
    assert x.VM.get_power_state(new) == "Halted"


def test_the_transfer_log_records_each_transfer_with_the_host_that_served_it(sim, client):
    """The pool's own interval log (xapisim/transfer_log.py) that the streams tests measure
    with: one interval per transfer, the serving host's uuid, open while the body streams.
    Which host serves follows xapi's export.ml handler (the host asked, when it sees the SRs)."""
    x = client.x
    sim.control.clear_transfer_log()
    vdi = x.VDI.get_uuid(disk_vdis(x, vm_named(x, "test-vm-2"))[0])
    sim.control.rate_limit(8 * MiB)
    reply = client.request("GET", "/export_raw_vdi", {"vdi": vdi})
    reply.read(MiB)
    running = sim.control.transfer_log()
    rest = reply.read()
    sim.control.rate_limit(0)
    assert rest
    log = sim.control.transfer_log()
    master_uuid = x.host.get_uuid(x.pool.get_master(x.pool.get_all()[0]))
    assert [(e["kind"], e["host"], e["target"]) for e in log] == [("/export_raw_vdi", master_uuid, vdi)]
    assert running[0]["end"] is None
    assert log[0]["start"] < log[0]["end"]
    assert sim.control.clear_transfer_log() == 1 and sim.control.transfer_log() == []


def test_the_transfer_log_records_an_nbd_connection_on_the_host_that_served_it(sim, client):
    """NBD reads are streams too: one interval per connection, on the host connected to
    (VDI.get_nbd_info lists every host that sees the SR: xapi_vdi.ml get_nbd_info)."""
    from backups.formats.nbd import connect_from_nbd_info

    x = client.x
    snap_vdi = disk_vdis(x, x.VM.snapshot(vm_named(x, "test-vm-4"), "nbd"))[0]
    member = [i for i in x.VDI.get_nbd_info(snap_vdi) if i["address"] == "127.0.0.2"]
    sim.control.clear_transfer_log()
    with connect_from_nbd_info(member, tls=False) as nbd:
        assert len(nbd.read(0, 65536)) == 65536
        running = sim.control.transfer_log()
    member_uuid = [h["uuid"] for h in sim.control.state()["hosts"] if h["address"] == "127.0.0.2"][0]
    log = sim.control.transfer_log()
    assert [(e["kind"], e["host"], e["target"]) for e in running] == [("nbd", member_uuid, x.VDI.get_uuid(snap_vdi))]
    assert running[0]["end"] is None
    deadline = time.monotonic() + 30
    while log[0]["end"] is None and time.monotonic() < deadline:      # the server notices the hang-up
        log = sim.control.transfer_log()
    assert log[0]["end"] is not None and log[0]["start"] <= log[0]["end"]
