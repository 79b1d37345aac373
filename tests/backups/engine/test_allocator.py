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


ARENAS = textwrap.dedent("""
    import ctypes, sys, threading
    from backups.engine import allocator
    if sys.argv[1] == "tuned":
        assert allocator.keep_buffers_resident()
    else:  # the buffer thresholds alone, without the arena cap
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD)
        libc.mallopt(allocator.M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD)
    def rss_kib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    turn, threads = threading.Condition(), 8
    state = {"next": 0}
    def work(me):                       # 8 threads take turns: 4 MiB live at any time
        for round in range(3):
            with turn:
                turn.wait_for(lambda: state["next"] == me)
                buffers = [bytes([me]) * (1 << 20) for _ in range(4)]
                del buffers
                state["next"] = (me + 1) % threads
                turn.notify_all()
    before = rss_kib()
    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers: w.start()
    for w in workers: w.join()
    print(rss_kib() - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_threads_taking_turns_reuse_each_others_freed_buffers():
    """With the arena cap, buffers one thread freed serve the next thread; without it each
    of the 8 threads keeps its own 4 MiB in its own arena."""
    def retained(mode):
        return int(subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True,
                                  text=True, check=True).stdout)
    from backups.engine.allocator import ARENA_MAX

    uncapped, capped = retained("uncapped"), retained("tuned")
    assert uncapped > 28 * 1024, uncapped                   # 8 arenas x 4 MiB (measured 32 MiB)
    assert capped < (ARENA_MAX * 4 + 2) * 1024, capped      # 2 arenas here (measured 8 MiB)
