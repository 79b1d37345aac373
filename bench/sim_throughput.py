"""Simulator throughput: /export and /export_raw_vdi MB/s on loopback for a 4 GiB disk with
40 % zeros / 30 % text / 30 % random content, the simulator's peak RSS, VM.get_all_records
for 2000 VMs, and event.from wake-up latency.

    .venv/bin/python bench/sim_throughput.py [--size-gib 4] [--vms 2000]
"""

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.fixtures.sim import SimHandle  # noqa: E402

GiB = 1 << 30
MB = 1e6


def peak_rss_mib(pid: int) -> float:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stream(sim, path: str, query: str) -> tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=600)
    start = time.perf_counter()
    conn.request("GET", path + "?" + query)
    reply = conn.getresponse()
    assert reply.status == 200, reply.status
    total = 0
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    while n := reply.readinto(view):
        total += n
    return total, time.perf_counter() - start


def bench_transfers(size_gib: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as data:
        sim = SimHandle(data, ["--test-vms", "1"]).start()
        try:
            session = sim.session()
            x = session.xenapi
            made = sim.control.create_vm("bench", [size_gib * GiB])
            vdi = made["vdis"][0]
            t = time.perf_counter()
            sim.control.call("fill_disk", vdi=vdi, seed=42, zero=0.4, text=0.3, random=0.3)
            fill = time.perf_counter() - t
            virtual = size_gib * GiB
            print("fill %d GiB (40/30/30): %.1f s" % (size_gib, fill))
            q = "session_id=%s" % session.handle
            for label, path, query in (
                ("export_raw_vdi raw", "/export_raw_vdi", q + "&vdi=" + vdi),
                ("export (no compression)", "/export", q + "&ref=" + made["ref"]),
                ("export zstd", "/export", q + "&ref=" + made["ref"] + "&use_compression=zstd"),
            ):
                runs = [stream(sim, path, query) for _ in range(2)]
                nbytes, seconds = min(runs, key=lambda r: r[1])
                print("%-26s %7.0f MB/s of disk (%7.0f MB/s on the wire, %.2f s, %d bytes)"
                      % (label, virtual / seconds / MB, nbytes / seconds / MB, seconds, nbytes))
            nbytes, seconds = export_into_import(sim, session.handle, made["ref"])
            print("%-26s %7.0f MB/s of disk (%7.0f MB/s on the wire, %.2f s; GET /export piped into PUT /import)"
                  % ("import (no compression)", virtual / seconds / MB, nbytes / seconds / MB, seconds))
            print("simulator peak RSS after transfers: %.0f MiB" % peak_rss_mib(sim.process.pid))
            bench_events(sim)
            x.session.logout()
        finally:
            sim.stop()


def export_into_import(sim, session: str, vm: str) -> tuple[int, float]:
    """Stream an export straight into an import (no Content-Length: the importer reads to
    EOF); the clock stops when the import's connection closes, i.e. when it is complete."""
    import socket
    source = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=600)
    start = time.perf_counter()
    source.request("GET", "/export?session_id=%s&ref=%s" % (session, vm))
    reply = source.getresponse()
    sink = socket.create_connection(("127.0.0.1", sim.port))
    sink.sendall(("PUT /import?session_id=%s HTTP/1.1\r\nHost: sim\r\n\r\n" % session).encode())
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    total = 0
    while n := reply.readinto(view):
        sink.sendall(view[:n])
        total += n
    sink.shutdown(socket.SHUT_WR)
    answer = b""
    while chunk := sink.recv(65536):
        answer += chunk
    sink.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    return total, time.perf_counter() - start


def bench_events(sim) -> None:
    waiter_session, actor = sim.session(), sim.session()
    vm = actor.xenapi.VM.get_by_name_label("test-vm-1")[0]
    token = waiter_session.xenapi_request("event.from", (["vm"], "", 1.0))["token"]
    latencies = []
    for i in range(20):
        woke = {}

        def wait(token=token):
            reply = waiter_session.xenapi_request("event.from", (["vm"], token, 30.0))
            woke["at"] = time.perf_counter()
            woke["token"] = reply["token"]

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.05)  # let the waiter block in event.from
        changed = time.perf_counter()
        actor.xenapi.VM.set_name_label(vm, "renamed %d" % i)
        thread.join()
        latencies.append((woke["at"] - changed) * 1000)
        token = woke["token"]
    latencies.sort()
    print("event.from wake-up after a change: median %.1f ms, max %.1f ms (20 changes; includes the"
          " setter's own round trip)" % (statistics.median(latencies), latencies[-1]))


def bench_records(vms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as data:
        t = time.perf_counter()
        sim = SimHandle(data, ["--vms", str(vms)]).start()
        print("start with --vms %d: %.1f s" % (vms, time.perf_counter() - t))
        try:
            x = sim.session().xenapi
            times = []
            for _ in range(3):
                t = time.perf_counter()
                records = x.VM.get_all_records()
                times.append(time.perf_counter() - t)
            print("VM.get_all_records (%d records): best %.2f s, median %.2f s (server + client parse)"
                  % (len(records), min(times), statistics.median(times)))
            print("simulator peak RSS with %d VMs: %.0f MiB" % (vms, peak_rss_mib(sim.process.pid)))
        finally:
            sim.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size-gib", type=int, default=4)
    p.add_argument("--vms", type=int, default=2000)
    args = p.parse_args()
    bench_transfers(args.size_gib)
    bench_records(args.vms)


if __name__ == "__main__":
    main()
