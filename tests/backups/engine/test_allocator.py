"""The allocator tuning keeps freed chunk buffers resident: new buffers do not fault in fresh
pages. Counted in page faults (deterministic), in a child process so that the test process's
allocator stays as it was."""
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import resource, sys
    from backups.engine.allocator import keep_buffers_resident
    if sys.argv[1] == "tuned":
        assert keep_buffers_resident()
    def churn():
        for i in range(200):            # a chunk's life: plaintext, compressed, encrypted
            data = bytes([i % 251]) * (1 << 20)
            blob = data[:-1] + b"x"
            del data, blob
    churn()                             # warm up: the first buffers fault in either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    churn()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def page_faults(mode):
    result = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                            check=True)
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_chunk_buffers_are_reused_instead_of_faulted_in_again():
    untuned, tuned = page_faults("default"), page_faults("tuned")
    pages_per_round = 2 * 200 * (1 << 20) // 4096
    assert untuned > pages_per_round / 2      # glibc's default: fresh pages for every buffer
    assert tuned < pages_per_round / 20
