"""How long the command line takes to reject each bad input of the test suite, as a user runs it
(a fresh ``python -m fmlbd`` process; smoke profile, minimal Omniglot in data/).

    .venv/bin/python benchmarks/bad_input_latency.py [data_root]

Prints each probe's wall time, exit code and message, then the slowest. The probes that need the
data (e.g. more shots + queries than images per class) load the decoded images first.
"""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.cli_probes import CLI_PROBES  # noqa: E402

if __name__ == "__main__":
    data = sys.argv[1] if len(sys.argv) > 1 else "data"
    times = []
    with tempfile.TemporaryDirectory() as results:
        for argv, _ in CLI_PROBES:
            cmd = [sys.executable, "-m", "fmlbd", argv[0], "--profile", "smoke", "--data-root", data,
                   "--results-dir", results, "--no-progress", *argv[1:]]
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            times.append(seconds)
            print(f"{seconds:6.2f} s  exit {out.returncode}  {' '.join(argv):55.55s}  {out.stderr.strip()[:90]}")
    print(f"{len(times)} probes: slowest {max(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s")
