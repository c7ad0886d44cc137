"""Which torch build scripts/setup.sh installs: "cpu" (PyTorch's CPU wheel index, about a tenth of
the download) or "registry" (the package registry's wheels, which on Linux bring the CUDA libraries).

FMLBD_TORCH=cpu or =registry forces one; unset (or "auto"): the CPU index on Linux without an
NVIDIA driver when that index answers, the registry otherwise. Standard library only: it runs
before anything is installed. Prints "<choice><TAB><why>" on stdout.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
import urllib.request

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CHOICES = ("auto", "cpu", "registry")


def choose(forced: str, system: str, nvidia_driver: bool, index_reachable) -> tuple[str, str]:
    """``(choice, reason)``; ``index_reachable`` is called only when the answer depends on it."""
    forced = (forced or "auto").strip().lower()
    if forced not in CHOICES:
        raise ValueError(f"FMLBD_TORCH={forced!r}: choose one of {', '.join(CHOICES)}")
    if forced == "registry":
        return "registry", "FMLBD_TORCH=registry"
    if forced == "cpu":
        return "cpu", "FMLBD_TORCH=cpu"
    if system != "Linux":
        return "registry", f"{system}: the registry's torch is already CPU-sized (or the one to use)"
    if nvidia_driver:
        return "registry", "an NVIDIA driver is installed: the registry's torch can use the GPU"
    if not index_reachable():
        return "registry", f"Linux without an NVIDIA driver, but {CPU_INDEX} does not answer: falling back"
    return "cpu", "Linux without an NVIDIA driver"


def has_nvidia_driver() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def reachable(url: str = CPU_INDEX + "/torch/", timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except Exception:
        return False


def main() -> int:
    try:
        choice, reason = choose(os.environ.get("FMLBD_TORCH", ""), platform.system(), has_nvidia_driver(),
                                reachable)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{choice}\t{reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
