"""`make bench`: every benchmark in turn, each printing its ratios against a reference
measured in the same run. Takes a while (several GiB of simulated disks)."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    ["sim_throughput.py"],
    ["sim_formats.py", "--size-gib", "1"],
    ["xva_parse_throughput.py"],
    ["chunk_size.py"],
    ["repository_pipeline.py", "--size-gib", "1"],
    ["backup_throughput.py", "--size-gib", "4"],
    ["restore_throughput.py"],
    ["s3_throughput.py", "--size-gib", "2"],
    ["jobs_scale.py"],
]


def main():
    failed = []
    for script, *args in BENCHMARKS:
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args], cwd=HERE.parent).returncode:
            failed.append(script)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
