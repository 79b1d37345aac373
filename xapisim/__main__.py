"""python -m xapisim --listen 127.0.0.1:PORT --data DIR [--demo] [--vms N] [--password PW]
[--tls] [--product-version X.Y.Z] [--seed N] [--timing KIND=SECONDS ...]"""

import argparse
import signal
import sys
import threading

from .simulator import Config, Simulator


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m xapisim", description="XenAPI pool simulator (loopback only)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="master address:port; members use the next addresses")
    p.add_argument("--data", required=True, help="state directory (objects, disks, certificate)")
    p.add_argument("--demo", action="store_true", help="create the demo pool's VMs on first start")
    p.add_argument("--vms", type=int, default=0, help="add N small VMs for scale tests")
    p.add_argument("--test-vms", type=int, default=0, help="add N small VMs with 8-64 MiB disks (test fixture)")
    p.add_argument("--hosts", type=int, default=2, help="number of hosts in the pool")
    p.add_argument("--password", default="demo", help="root password")
    p.add_argument("--tls", action="store_true", help="serve https with a self-signed certificate kept in --data")
    p.add_argument("--product-version", default="8.3.0", help="emulated product version, e.g. 7.1.0, 8.2.1, 8.3.0")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--nbd-port", type=int, default=10809, help="NBD port on every host (0 = any free port)")
    p.add_argument("--session-timeout", type=float, default=24 * 3600.0, help="idle seconds before a session expires")
    p.add_argument("--timing", action="append", default=[], metavar="KIND=SECONDS",
                   help="time an operation takes: snapshot, checkpoint, shutdown, coalesce (repeatable)")
    return p.parse_args(argv)


def parse_timings(items: list[str]) -> dict:
    from .timing import DEFAULTS
    timings = {}
    for item in items:
        kind, _, seconds = item.partition("=")
        if kind not in DEFAULTS:
            raise SystemExit("--timing: unknown kind %r (one of %s)" % (kind, ", ".join(DEFAULTS)))
        timings[kind] = float(seconds)
    return timings


def main(argv=None) -> int:
    args = parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    config = Config(listen_host=host, port=int(port), data_dir=args.data, password=args.password, tls=args.tls,
                    product_version=args.product_version, seed=args.seed, session_timeout=args.session_timeout,
                    nbd_port=args.nbd_port, hosts=args.hosts, timings=parse_timings(args.timing))
    sim = Simulator(config)
    sim.load_or_build(demo=args.demo, vms=args.vms, small=args.test_vms)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sim.start()
    db = sim.db
    with db.lock:
        pool = db.get("pool", sim.pool_ref())["name_label"]
        vms = sum(1 for r in db.all("VM").values()
                  if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"]))
        hosts = len(db.all("host"))
    print("xapisim ready: %s (pool %s, %d hosts, %d VMs, product %s)"
          % (sim.url_of(sim.master()), pool, hosts, vms, sim.product.version), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        print("xapisim stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
