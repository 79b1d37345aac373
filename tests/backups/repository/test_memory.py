import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import json, sys, tempfile


def peak_kib():
    # VmHWM belongs to this process image; ru_maxrss would carry over the (large) pytest
    # parent's peak through fork and exec.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


from datetime import datetime, timezone
from backups.repository import LocalBackend, Repository
from tests.backups.repository.diskdata import stream_mixed_disk

size = int(sys.argv[1])
with tempfile.TemporaryDirectory() as path:
    repo = Repository.create(LocalBackend(path), passphrase="p", scrypt_n=2**15)
    before = peak_kib()
    with repo.start_backup("vm-big", datetime.now(timezone.utc)) as writer:
        disk = writer.add_disk("xvda", size)
        for offset, data in stream_mixed_disk(size, block=3 << 19):  # 1.5 MiB: re-chunked
            disk.write(offset, data)
        disk.finish()
        manifest = writer.commit()
    after = peak_kib()
print(json.dumps({"peak_kib": after, "growth_kib": after - before, "totals": manifest.totals}))
"""


@pytest.mark.slow
def test_memory_stays_bounded_while_writing_a_large_disk():
    size = 1 << 30
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(size)], cwd=ROOT,
                            capture_output=True, text=True, timeout=240, check=True)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["totals"]["bytes_read"] == size
    assert measured["totals"]["chunks_total"] == 1024
    # The whole process peak (interpreter, scrypt's 32 MiB, buffers) stays under 200 MiB;
    # in-flight chunks x chunk size is about 8-12 MiB of it.
    assert measured["peak_kib"] < 200 * 1024, measured
