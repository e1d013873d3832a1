"""Process memory figures for the benchmarks: peak RSS (VmHWM) of this process, the Spark driver JVM
and the Python workers Spark forks."""

import os
import subprocess
from pathlib import Path


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def jvm_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if b"java" in Path(f"/proc/{p}/cmdline").read_bytes()[:200]]


def descendants(pid: int) -> list[int]:
    out = [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    return out + [d for p in out for d in descendants(p)]


def python_worker_pids() -> list[int]:
    """The JVM's Python workers (pyspark daemon and the workers it forks: where mapInPandas scores)."""
    pids = []
    for pid in (d for j in jvm_pids() for d in descendants(j)):
        try:
            if b"python" in Path(f"/proc/{pid}/cmdline").read_bytes()[:300]:
                pids.append(pid)
        except OSError:
            pass
    return pids


def reset_peak_rss(pids: list[int]) -> bool:
    """Reset VmHWM to the current RSS (writing 5 to clear_refs); False where the kernel refuses."""
    ok = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok
