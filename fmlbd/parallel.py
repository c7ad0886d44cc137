"""Independent computations side by side: forked worker processes of one torch thread each.

Every computation in fmlbd runs on one torch thread: floating-point sums depend on how they are
split across threads, so a result never depends on the machine's core count. A multi-core
machine is used by running independent computations (evaluation episodes, the clients of a
round) side by side in processes: :func:`pmap` gives exactly ``[fn(x) for x in items]``, bit for
bit, whatever the number of workers. Workers are forked, so ``fn`` may be any closure (it is
never pickled; results are), and they die with their parent.

``FMLBD_WORKERS`` sets how many cores to use (default: the cores this process may use; 1 runs
everything in the calling process).
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
from multiprocessing.connection import wait
import os
import pickle
import signal
import traceback
from contextlib import contextmanager
from typing import Callable, Iterable, TypeVar

import torch

from .errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

_in_worker = False  # true in a forked worker: a nested pmap runs in place


def die_with_parent() -> None:
    """In a child process: ask Linux to send it SIGTERM when its parent dies (no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def cpu_workers() -> int:
    """Cores to use: ``FMLBD_WORKERS`` if set, else the cores available to this process."""
    value = os.environ.get("FMLBD_WORKERS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"FMLBD_WORKERS={value!r} is not a positive integer; unset it or give e.g. 2")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_visible() -> bool:
    """True when torch sees a GPU. Its autograd then starts GPU threads at the first backward pass,
    after which no forked process can use autograd: with a GPU visible, everything runs in the calling
    process (use ``--device cuda``; to use the CPU cores side by side instead, hide the GPU with
    ``CUDA_VISIBLE_DEVICES=``)."""
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def workers_for(items: int) -> int:
    """Processes for ``items`` independent computations (e.g. the local trainings of a federated
    round): one per item for up to twice the cores, else one per core (1 on one core, inside a
    worker, or with a GPU visible: :func:`gpu_visible`). A few items of about equal cost share the
    cores evenly when each has its process: 3 trainings on 2 cores take 1.5 training times, not the
    2 of two processes."""
    cores = 1 if _in_worker or gpu_visible() else cpu_workers()
    if cores <= 1:
        return 1
    return items if items <= 2 * cores else cores


@contextmanager
def one_thread():
    """Within the block, torch computes on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _outcome(compute: Callable[[], R]) -> bytes:
    """``compute()``'s result, or the exception it raised with its traceback, pickled."""
    try:
        payload = ("ok", compute())
    except BaseException as exc:  # reported to the parent, which re-raises it
        payload = ("error", exc, traceback.format_exc())
    try:
        return pickle.dumps(payload)
    except Exception as exc:  # a result or an exception that does not pickle
        return pickle.dumps(("error", RuntimeError(f"{payload[1]!r} ({exc})"), payload[-1]))


def _serve(fn: Callable, conn, parent: int) -> None:
    global _in_worker
    _in_worker = True
    # a handler the parent installed (the CLI's SIGTERM -> SystemExit) would turn the parent-death
    # signal into an exception caught as a result, and the worker would wait for its next item for ever
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    torch.set_num_threads(1)
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:  # the parent is gone
            return
        if not data:  # the pool is closing
            return
        item = pickle.loads(data)
        conn.send_bytes(_outcome(lambda: fn(item)))


class Pool:
    """``processes`` forked workers that keep running ``fn`` on the items :meth:`map` sends them,
    on one torch thread each. ``fn`` and what it reaches are the parent's at construction (never
    pickled): items and results, pickled, must carry everything that changes later. Close with
    :meth:`close` or use it as a context manager (workers also die with their parent)."""

    def __init__(self, fn: Callable[[T], R], processes: int):
        ctx = mp.get_context("fork")
        self.procs, self.conns, parent = [], [], os.getpid()
        try:
            for _ in range(processes):
                here, there = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(fn, there, parent), daemon=True)
                proc.start()
                there.close()
                self.procs.append(proc)
                self.conns.append(here)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def map(self, items: Iterable[T]) -> list[R]:
        """``[fn(x) for x in items]``, items dealt round-robin to the workers."""
        items = list(items)

        def exchange(replies: list) -> None:
            n = len(self.conns)
            for start in range(0, len(items), n):
                batch = range(start, min(start + n, len(items)))
                for i in batch:
                    self.conns[i - start].send_bytes(pickle.dumps(items[i]))
                for i in batch:
                    replies[i] = pickle.loads(self.conns[i - start].recv_bytes())
        return self._collect(exchange, len(items))

    def map_as_free(self, items: Iterable[T]) -> list[R]:
        """``[fn(x) for x in items]``, each item sent to the first worker that is free (items of
        unequal cost keep every worker busy; each result is computed on its own, so the order in
        which the workers take them does not change it)."""
        items = list(items)

        def exchange(replies: list) -> None:
            busy: dict = {}  # connection -> index of the item it computes
            for conn, i in zip(self.conns, range(len(items))):
                conn.send_bytes(pickle.dumps(items[i]))
                busy[conn] = i
            following = iter(range(len(busy), len(items)))
            while busy:
                for conn in wait(list(busy)):
                    replies[busy.pop(conn)] = pickle.loads(conn.recv_bytes())
                    i = next(following, None)
                    if i is not None:
                        conn.send_bytes(pickle.dumps(items[i]))
                        busy[conn] = i
        return self._collect(exchange, len(items))

    def _collect(self, exchange: Callable[[list], None], count: int) -> list:
        """Run ``exchange(replies)`` with the workers, then the results in order (a worker's exception
        re-raised here); a dead worker or an interruption closes the pool."""
        replies: list = [None] * count
        try:
            exchange(replies)
        except EOFError:
            self.close()
            raise RuntimeError("a worker process died before returning its result; rerun with FMLBD_WORKERS=1 "
                               "to compute in this process") from None
        except BaseException:  # e.g. Ctrl-C: the workers' state is unknown now
            self.close()
            raise
        for reply in replies:
            if reply[0] == "error":
                raise reply[1] from RuntimeError(f"in a worker process:\n{reply[2]}")
        return [reply[1] for reply in replies]

    def close(self) -> None:
        """Stop the workers (those busy are terminated)."""
        for conn in self.conns:  # an empty message stops a worker (an EOF would not come: workers forked
            try:                  # later hold copies of this end of the pipe)
                conn.send_bytes(b"")
            except OSError:
                pass
            conn.close()
        for proc in self.procs:
            proc.join(timeout=1)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        self.procs, self.conns = [], []


def pmap(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, computed on one torch thread in ``workers`` forked processes
    (default: one per item for up to twice the cores, letting the system share the cores evenly
    among a few long items, else one per core, each taking the next item as soon as it is free;
    items are never pickled, only their positions and the results). Runs in place when one worker
    suffices, inside a worker, or without fork."""
    items = list(items)
    n = min(len(items), workers or workers_for(len(items)))
    if n <= 1 or _in_worker or "fork" not in mp.get_all_start_methods():
        with one_thread():
            return [fn(x) for x in items]
    with Pool(lambda i: fn(items[i]), n) as pool:
        return pool.map_as_free(range(len(items)))
