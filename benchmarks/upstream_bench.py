"""Classification export against armory-library 24.6.1, side by side, with the targets of issue #8.

Runs ``../shared/peer``'s two scripts (its ``side_by_side.sh`` does the same for the full
export only) in interleaved rounds, U then ours, on one torch thread:

- U: ``bench_peer.py --sinks mlflow``, armory-library's ImageClassificationExporter
  writing to an MLflow file store;
- ours, ``bench_ours.py --sinks export,nofo``: the exporter in a user's own loop,
  ``export`` the complete export (PNG, Parquet, manifest and the FiftyOne dataset built
  at close), ``nofo`` the same export directory with the FiftyOne dataset built when it
  is first opened (``fiftyone=False``; the path of a copy on another machine).

For 32 and 256 samples at 64x64 and 224x224 it prints each system's median ms per
sample over the rounds, U/ours for both of our sinks (and each round's paired ratio), and the targets: 64x64 at least
5x at 256 samples and 2x at 32; 224x224 at least 1.5x.

Run from the project root after ``bash ../shared/peer/setup_peer.sh``:
``python benchmarks/upstream_bench.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = ROOT.parent / "shared" / "peer"
TARGETS = {("ic", 256): 5.0, ("ic", 32): 2.0, ("ic224", 256): 1.5, ("ic224", 32): 1.5}
LABELS = {"ic": "64x64", "ic224": "224x224"}


def run_round(peer_python: str, batches: int, work: Path, round_index: int) -> tuple[dict, dict]:
    """One round of U then ours; each system's {(key, sink): seconds per sample}."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1",
               MLFLOW_TRACKING_URI=f"file:{work}/mlruns", MLFLOW_ALLOW_FILE_STORE="true",
               PYTHONPATH=str(ROOT))
    common = ["--threads", "1", "--batches", str(batches), "--batch-size", "16", "--only", "ic,ic224"]
    results = []
    for system, command in (
            ("peer", [peer_python, str(PEER_DIR / "bench_peer.py"), *common, "--sinks", "mlflow"]),
            ("ours", [sys.executable, str(PEER_DIR / "bench_ours.py"), *common, "--sinks", "export,nofo",
                      "--out", str(work / f"ours-{batches}-{round_index}")])):
        out = work / f"{system}-{batches}-{round_index}.json"
        subprocess.run([*command, "--json", str(out)], check=True, env=env, cwd=work,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = json.loads(out.read_text())["results"]
        results.append({(r["key"], r["sink"]): r["total"] / r["samples"] for r in rows})
    for written in (work / "mlruns", work / f"ours-{batches}-{round_index}"):  # ~0.7 GB a run
        shutil.rmtree(written, ignore_errors=True)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peer-python", default=os.environ.get("PEER_PY", "/tmp/peer/venv/bin/python"))
    args = parser.parse_args()
    if not Path(args.peer_python).exists():
        sys.exit(f"no armory-library interpreter at {args.peer_python}; run bash ../shared/peer/setup_peer.sh")
    work = Path(tempfile.mkdtemp(prefix="upstream-bench-"))
    rows = []
    for batches in (2, 16):
        peer, ours = {}, {}
        for r in range(args.rounds):
            p, o = run_round(args.peer_python, batches, work, r)
            for key, value in p.items():
                peer.setdefault(key[0], []).append(value)
            for key, value in o.items():
                ours.setdefault(key, []).append(value)
        for key in ("ic", "ic224"):
            u = statistics.median(peer[key])
            full, directory = statistics.median(ours[(key, "export")]), statistics.median(ours[(key, "nofo")])
            paired = [[a / b for a, b in zip(peer[key], ours[(key, sink)])] for sink in ("export", "nofo")]
            rows.append((f"{LABELS[key]}, {16 * batches} samples", u, full, directory, TARGETS[(key, 16 * batches)],
                         paired))
    print(f"one torch thread; median of {args.rounds} interleaved rounds; ms per sample (whole export / samples)")
    print(f"{'workload':<22} {'U (MLflow)':>10} {'ours':>8} {'U/ours':>7} {'ours, FiftyOne at first open':>29} "
          f"{'U/ours':>7} {'target':>7}  met (ours / first open)  paired U/ours per round (ours / first open)")
    for name, u, full, directory, target, paired in rows:
        ranges = " / ".join(f"{min(r):.2f}-{max(r):.2f}x" for r in paired)
        print(f"{name:<22} {1000 * u:10.2f} {1000 * full:8.2f} {u / full:6.2f}x {1000 * directory:29.2f} "
              f"{u / directory:6.2f}x {target:6.1f}x  {'yes' if u / full >= target else 'NO':>3} / "
              f"{'yes' if u / directory >= target else 'NO':<3}              {ranges}")
    print(f"(each round's JSON under {work})")


if __name__ == "__main__":
    main()
