"""Big VMs: a 2 TiB-class virtual disk backs up and restores with bounded memory. 2040 GiB:
a VHD-based SR holds nothing bigger (sm vhdutil.py MAX_VHD_SIZE, 2093051 MiB with the VHD's
metadata) and xapi exports no bigger VHD (VDI_TOO_LARGE, backups/formats/vhd.py MAX_VHD_SIZE).

The disk is sparse in the simulator, as a new thin-provisioned disk is on a real SR: 16 MiB of
data in 256 places. The full export (XVA) carries only the 1 MiB blocks that hold data (xapi
stream_vdi.ml skips all-zero blocks), the repository stores no all-zero chunk (a null in the
manifest) and the restore sends only the blocks with data, so both finish in seconds. The
backup and the restore run as `manage.py backup` / `manage.py restore` processes, whose peak
RSS (VmHWM of the process's own memory, read as it exits) is printed, and compared with the
same VM at 64 GiB:
it must not grow with the disk's size beyond the manifest's chunk list (one entry per MiB).
"""
import hashlib
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from backups.formats.vhd import read_vhd_stream
from backups.models import RestorePoint
from tests.fixtures.cluster import REPO, shared_database_env
from xenpools.inventory import sync_pool

pytestmark = pytest.mark.slow

GiB = 1 << 30
BIG = 2040 * GiB
SMALL = 64 * GiB
BLOCK = 64 * 1024


# ru_maxrss would not do: the kernel keeps the largest RSS across exec, so a child forked from
# a pytest process grown to 500 MiB by earlier tests would report that. VmHWM belongs to the
# memory of the program after exec, and is read just before it exits.
MEASURED = ("import atexit, runpy, sys\n"
            "def hwm():\n"
            "    kib = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
            "    print(f'peak-rss-kib {kib}', file=sys.stderr, flush=True)\n"
            "atexit.register(hwm)\n"
            "sys.argv = ['manage.py', *sys.argv[1:]]\n"
            "runpy.run_path('manage.py', run_name='__main__')\n")


def run_command(*args) -> tuple[str, int]:
    """Run a manage.py command against the test database; (output, peak RSS in MiB)."""
    result = subprocess.run([sys.executable, "-c", MEASURED, *args], cwd=REPO, env=shared_database_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output[-3000:]
    return output, int(output.rsplit("peak-rss-kib ", 1)[1].split()[0]) // 1024


def data_blocks(pool_reader, vdi_uuid) -> dict[int, str]:
    """{offset: sha256} of every 64 KiB block of the disk that is not all zeros, read from the
    pool as a dynamic VHD (only allocated blocks travel)."""
    import base64
    import http.client

    parts = urlsplit(pool_reader.sim.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    auth = base64.b64encode(f"root:{pool_reader.sim.password}".encode()).decode()
    connection.request("GET", f"/export_raw_vdi?vdi={vdi_uuid}&format=vhd", headers={"Authorization": f"Basic {auth}"})
    response = connection.getresponse()
    assert response.status == 200
    _size, pieces = read_vhd_stream(response)
    blocks, zero = {}, bytes(BLOCK)
    for offset, data in pieces:
        for start in range(0, len(data), BLOCK):
            piece = data[start:start + BLOCK]
            if piece != zero[:len(piece)]:
                blocks[offset + start] = hashlib.sha256(piece).hexdigest()
    connection.close()
    return blocks


def test_a_2_tib_disk_backs_up_and_restores_with_bounded_memory(sim, pool, store, pool_reader):
    for name, size in (("small-vm", SMALL), ("big-vm", BIG)):
        created = sim.control.create_vm(name, [size], written_blocks=256)
        assert len(data_blocks(pool_reader, created["vdis"][0])) > 200
    sync_pool(pool)
    rss = {}
    for name in ("small-vm", "big-vm"):
        output, rss[name, "backup"] = run_command("backup", "--vm", name, "--store", store.name, "--method", "normal")
        assert "backup of" in output, output
    point = RestorePoint.objects.get(vm_name="big-vm")
    assert point.virtual_size == BIG

    _out, rss["big-vm", "restore"] = run_command("restore", "--backup", point.point_id, "--pool", pool.name,
                                                 "--sr", "Shared NFS storage", "--new-identity", "--name", "big-vm restored")
    small_point = RestorePoint.objects.get(vm_name="small-vm")
    _out, rss["small-vm", "restore"] = run_command("restore", "--backup", small_point.point_id, "--pool", pool.name,
                                                   "--sr", "Shared NFS storage", "--new-identity",
                                                   "--name", "small-vm restored")
    print("\npeak RSS (MiB): " + ", ".join(f"{vm} {step} {mib}" for (vm, step), mib in sorted(rss.items())))

    x = pool_reader.xenapi
    (original,) = pool_reader.disks(x.VM.get_uuid(x.VM.get_by_name_label("big-vm")[0])).values()
    (restored,) = pool_reader.disks(x.VM.get_uuid(x.VM.get_by_name_label("big-vm restored")[0])).values()
    assert int(x.VDI.get_virtual_size(x.VDI.get_by_uuid(restored))) == BIG
    assert data_blocks(pool_reader, restored) == data_blocks(pool_reader, original)

    # Bounded: the 2 TiB disk costs at most its chunk list (2 M entries) more than 64 GiB does.
    for step in ("backup", "restore"):
        assert rss["big-vm", step] < 400, rss
        assert rss["big-vm", step] - rss["small-vm", step] < 120, rss
