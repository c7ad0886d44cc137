"""Flower's Deployment Engine started from Python: one SuperLink, one SuperNode per client, each a
separate process, and ``flwr run`` of the app in ``flower/`` against them.

:class:`LocalDeployment` is what docs/flower.md tells an instructor to start by hand, on one machine
(tests, a dry run before class): insecure on localhost, or with TLS and SuperNode authentication
from :mod:`fmlbd.flower.credentials`. It stops exactly the processes it started.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "flower"  # the Flower app folder (pyproject.toml) of this checkout


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    """The Flower command ``name`` of this Python environment."""
    return str(Path(sys.executable).parent / name)


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with code {process.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


class LocalDeployment:
    """A SuperLink and ``nodes`` SuperNodes on this machine (``with LocalDeployment(...) as d:``).

    keys: a folder written by :func:`fmlbd.flower.credentials.make_credentials`: the SuperLink then
    serves TLS (its ``server.crt``) with SuperNode authentication, node ``N`` signs in with ``node-N``
    after its public key was registered (``register``); without it, insecure mode (localhost only).
    gate: SuperNodes connect through :mod:`fmlbd.flower.gate` (needs ``keys``), which serves only the
    Fleet API: ``flwr`` commands work only on the SuperLink's own loopback address (the instructor's).
    home: folder for each process's output (``superlink.log``, ``supernode-N.log``, ``gate.log``).
    """

    def __init__(self, home: Path, data_root: Path, nodes: int, keys: Path | None = None,
                 register: bool = True, gate: bool = False):
        if gate and keys is None:
            raise ValueError("the gate serves TLS: give keys (python -m fmlbd.flower.credentials)")
        self.home, self.data_root, self.nodes, self.keys, self.register = home, data_root, nodes, keys, register
        self.port = free_port()
        self.gate_port = free_port() if gate else None
        self.processes: list[subprocess.Popen] = []
        self.env = dict(os.environ, FLWR_HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}"
                                                          f"{os.environ.get('PATH', '')}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def node_address(self) -> str:
        """Where SuperNodes connect: the gate if there is one, else the SuperLink."""
        return self.address if self.gate_port is None else f"127.0.0.1:{self.gate_port}"

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                   start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def _security(self) -> list[str]:
        if self.keys is None:
            return ["--insecure"]
        k = self.keys
        return ["--ssl-ca-certfile", str(k / "ca.crt"), "--ssl-certfile", str(k / "server.crt"),
                "--ssl-keyfile", str(k / "server.key"), "--enable-supernode-auth"]

    def connection(self, address: str | None = None) -> str:
        """The SuperLink connection of ``$FLWR_HOME/config.toml`` that ``flwr`` commands use."""
        lines = ["[superlink]", 'default = "local"', "", "[superlink.local]", f'address = "{address or self.address}"']
        lines += ["insecure = true"] if self.keys is None else [f'root-certificates = "{self.keys / "ca.crt"}"']
        return "\n".join(lines) + "\n"

    def __enter__(self) -> "LocalDeployment":
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(self.connection())
        try:
            link = self._start("superlink", [_tool("flower-superlink"), *self._security(), "--host", "127.0.0.1",
                                             "--port", str(self.port), "--disable-runtime-dependency-installation"])
            wait_for_port(self.port, 60, link)
            if self.gate_port is not None:
                gate = self._start("gate", [sys.executable, "-m", "fmlbd.flower.gate", "--listen",
                                            self.node_address, "--superlink", self.address, "--keys", str(self.keys)])
                wait_for_port(self.gate_port, 60, gate)
            for n in range(self.nodes):
                if self.keys is not None and self.register:
                    self.flwr("supernode", "register", str(self.keys / f"node-{n}.pub"), "local")
                self.start_node(n)
        except BaseException:
            self.__exit__()
            raise
        return self

    def start_node(self, n: int, key: Path | None = None) -> subprocess.Popen:
        """SuperNode ``n`` (``partition-id=n``), signing in with ``key`` (default the keys' ``node-n``);
        its output goes to ``supernode-n.log`` (``supernode-n-<key name>.log`` with another key)."""
        config = f"partition-id={n} data-root='{self.data_root}'"
        security = ["--insecure"] if self.keys is None else [
            "--root-certificates", str(self.keys / "ca.crt"),
            "--auth-supernode-private-key", str(key or self.keys / f"node-{n}")]
        name = f"supernode-{n}" if key is None else f"supernode-{n}-{key.name}"
        return self._start(name, [_tool("flower-supernode"), *security, "--superlink", self.node_address,
                                  "--node-config", config, "--port", str(free_port())])

    def flwr(self, *args: str, timeout: float = 600, home: Path | None = None) -> subprocess.CompletedProcess:
        """A ``flwr`` command against this SuperLink (or as configured in ``home``'s config.toml);
        raises with its output if it fails."""
        env = self.env if home is None else self.env | {"FLWR_HOME": str(home)}
        done = subprocess.run([_tool("flwr"), *args], capture_output=True, text=True, env=env, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"flwr {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def run(self, run_config: dict, timeout: float = 600, home: Path | None = None) -> subprocess.CompletedProcess:
        """``flwr run`` of the app with ``run_config``, streaming its logs until it ends (from a machine
        configured in ``home``'s config.toml, default the instructor's)."""
        pairs = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in run_config.items())
        return self.flwr("run", str(APP), "local", "--run-config", pairs, "--stream", timeout=timeout, home=home)

    def learner_home(self, home: Path) -> Path:
        """A ``FLWR_HOME`` as on a learner's machine: only ``ca.crt`` and the address SuperNodes use."""
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(self.connection(self.node_address))
        return home

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, 15)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
        self.processes = []
