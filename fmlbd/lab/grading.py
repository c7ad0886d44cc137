"""Running a code task's checks on a learner's function, and what the learner is told; :class:`Task`,
a task with its checks.

A check calls the learner's function on small inputs and raises :class:`Wrong` with one line that
names what is wrong (a shape, a value in a simple case, an invariance); :func:`grade_checks` runs a task's
checks and returns a :class:`Report` (shown as Markdown in a notebook). A function still raising
``NotImplementedError`` is "not written yet", never a traceback; any other exception is reported
by its type, its message and the line of the learner's code that raised it, on one line.
"""
from __future__ import annotations

import math
import numbers
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

#: Where code that is not the learner's lives: fmlbd, the standard library and installed packages.
_NOT_THE_LEARNERS = tuple(str(Path(p).resolve()) for p in (
    Path(__file__).resolve().parents[1], *(sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib"))))
RAISED = "your function raised"   #: how every message about an exception from the learner's code starts


class Wrong(AssertionError):
    """A check failed: the message says what is wrong, in the learner's terms."""


Check = tuple[str, Callable[[Callable], None]]   #: (what it checks, check(fn) raising Wrong)


@dataclass(frozen=True)
class Outcome:
    check: str
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class Report:
    task: str
    outcomes: tuple[Outcome, ...]
    written: bool = True   #: False: the function still raises NotImplementedError

    @property
    def passed(self) -> int:
        return sum(o.ok for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return self.written and self.passed == len(self.outcomes)

    def _repr_markdown_(self) -> str:
        if not self.written:
            return (f"*Not written yet:* `{self.task}` still raises `NotImplementedError`; replace that line "
                    f"with your code and run this check again.")
        head = "**All checks pass.**" if self.ok else f"**Not yet:** {self.passed} of {len(self.outcomes)} checks pass."
        lines, said = [head, ""], set()
        for o in self.outcomes:
            again = o.message in said and o.message.startswith(RAISED)
            lines.append(f"- {'✓' if o.ok else '✗'} {o.check}" + ("" if o.ok else ": the same error" if again
                                                                  else f": {o.message}"))
            said.add(o.message)
        return "\n".join(lines)


def grade_checks(task: str, fn: Callable, checks: Sequence[Check]) -> Report:
    """Each check of ``checks`` on ``fn``. ``NotImplementedError`` from the first check means "not
    written yet"; from a later one it is a failure like any other exception."""
    outcomes = []
    for i, (what, check) in enumerate(checks):
        try:
            check(fn)
        except NotImplementedError as err:
            if i == 0:
                return Report(task, (), written=False)
            outcomes.append(Outcome(what, False, raised(err)))
        except Wrong as err:
            outcomes.append(Outcome(what, False, str(err)))
        except Exception as err:  # the learner's code raised: say what, not a traceback
            outcomes.append(Outcome(what, False, raised(err)))
        else:
            outcomes.append(Outcome(what, True))
    return Report(task, tuple(outcomes))


def raised(err: BaseException) -> str:
    """One line for an exception from the learner's function: its type, the line of the learner's own
    code that raised it (the innermost frame outside fmlbd, the standard library and installed
    packages) and its message on one line (at most 200 characters)."""
    mine = [f for f in traceback.extract_tb(err.__traceback__)
            if not str(Path(f.filename).resolve()).startswith(_NOT_THE_LEARNERS)]
    where = f" at `{mine[-1].line.strip()}`" if mine and mine[-1].line else ""
    message = " ".join(str(err).split())
    message = message if len(message) <= 200 else message[:200] + " ..."
    return f"{RAISED} {type(err).__name__}{where}: {message}"


def tensor(out, like: torch.Tensor, what: str = "the result") -> torch.Tensor:
    """``out`` if it is a tensor of ``like``'s shape and dtype, else :class:`Wrong` naming the difference."""
    if not isinstance(out, torch.Tensor):
        raise Wrong(f"{what} should be a torch.Tensor, got {type(out).__name__}")
    if out.shape != like.shape:
        raise Wrong(f"{what} should have shape {tuple(like.shape)}, got {tuple(out.shape)}")
    if out.dtype != like.dtype:
        raise Wrong(f"{what} should have dtype {like.dtype}, got {out.dtype}")
    return out


def close(out, want: torch.Tensor, what: str = "the result", atol: float = 1e-5) -> None:
    """:class:`Wrong` unless ``out`` has ``want``'s shape and dtype and values within ``atol`` (and 1e-4 relative)."""
    out = tensor(out, want, what)
    if not torch.isfinite(out).all():
        raise Wrong(f"{what} holds NaN or infinity (a division by zero?)")
    if not torch.allclose(out, want, atol=atol, rtol=1e-4):
        gap = (out - want).abs()
        at = tuple(int(i) for i in np.unravel_index(int(gap.flatten().argmax()), tuple(out.shape)))
        raise Wrong(f"{what}: not the expected values (largest gap at index {at}: "
                    f"{float(out[at]):.4g} instead of {float(want[at]):.4g})")


def params(out, want: dict, what: str = "the result") -> None:
    """:func:`close` for a dict of tensors, key by key; the keys must be ``want``'s."""
    if not isinstance(out, dict):
        raise Wrong(f"{what} should be a dict of tensors (one per weight name), got {type(out).__name__}")
    if sorted(out) != sorted(want):
        raise Wrong(f"{what} should have the keys {sorted(want)}, got {sorted(out)}")
    for k in want:
        close(out[k], want[k], f"{what}: weight {k!r}")


def number(out, want: float, what: str = "the result", rtol: float = 1e-4) -> None:
    """:class:`Wrong` unless ``out`` is a plain number (or a one-element tensor) within ``rtol`` of ``want``."""
    out = _real(out, what)
    if not math.isfinite(out):
        raise Wrong(f"{what} should be a finite number, got {out} (a division by zero?)")
    if abs(out - want) > rtol * max(abs(want), 1e-8):
        raise Wrong(f"{what} should be {want:.6g}, got {out:.6g}")


def _real(out, what: str) -> float:
    """``out`` as a float if it is a real number: a Python or NumPy number, or a one-element tensor."""
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        out = out.item()
    if isinstance(out, (bool, np.bool_)) or not isinstance(out, (numbers.Real, np.floating, np.integer)):
        raise Wrong(f"{what} should be a number (float), got {type(out).__name__}")
    return float(out)


def form(out, want) -> None:
    """:class:`Wrong` unless ``out`` has the type of ``want`` (a tensor of its shape and dtype, a dict of
    such tensors with its keys, a tuple of numbers of its length, or a number); the values are not
    compared. Returns ``out``."""
    if isinstance(want, torch.Tensor):
        tensor(out, want)
    elif isinstance(want, tuple):
        if not isinstance(out, (tuple, list)) or len(out) != len(want):
            raise Wrong(f"the result should be a tuple of {len(want)} numbers, got "
                        f"{f'{len(out)} of them' if isinstance(out, (tuple, list)) else type(out).__name__}")
        for value in out:
            _real(value, "each value of the result")
    elif isinstance(want, dict):
        if not isinstance(out, dict) or sorted(out) != sorted(want):
            raise Wrong(f"the result should be a dict of tensors with the keys {sorted(want)}, got "
                        f"{sorted(out) if isinstance(out, dict) else type(out).__name__}")
        for k in want:
            tensor(out[k], want[k], f"the result's weight {k!r}")
    else:
        _real(out, "the result")
    return out


def tensors(value) -> list[torch.Tensor]:
    """Every tensor in ``value``: a tensor, or a dict, list or tuple holding tensors (nested)."""
    if isinstance(value, torch.Tensor):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return [t for item in items for t in tensors(item)]


def copied(value):
    """``value`` with every tensor in it cloned (dicts, lists and tuples rebuilt; anything else kept)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, dict):
        return {k: copied(v) for k, v in value.items()}
    return type(value)(copied(v) for v in value) if isinstance(value, (list, tuple)) else value


def untouched(before, after, what: str) -> None:
    """:class:`Wrong` if the learner's function changed its input ``what`` (a tensor, or a dict or list of
    them) in place: a value, or whether it requires gradients."""
    pairs = list(zip(tensors(before), tensors(after)))
    if not all(torch.equal(b, a) for b, a in pairs):
        raise Wrong(f"your function changed {what} in place: compute a new tensor instead (e.g. x.clone() first)")
    if any(b.requires_grad != a.requires_grad for b, a in pairs):
        raise Wrong(f"your function made {what} require gradients: work on detached copies (v.detach())")


@dataclass(frozen=True)
class Task:
    name: str
    notebook: str
    teaches: str
    reference: Callable     #: fmlbd's implementation, with the learner's signature
    example: Callable[[], tuple]   #: fresh arguments for one call (the type-and-shape check)
    public: tuple[Check, ...]
    hidden: tuple[Check, ...]

    @property
    def checks(self) -> tuple[Check, ...]:
        """Public checks first (the result's type and shape, inputs left unchanged, then the task's own),
        then the hidden ones (given copies of their inputs, so a function that changes them in place
        loses only the public point)."""
        def shaped(fn) -> None:
            form(fn(*self.example()), self.reference(*self.example()))

        def kept(fn) -> None:
            args = self.example()
            before = copied(args)
            fn(*args)
            untouched(before, args, "its inputs")
        hidden = tuple((what, lambda fn, check=check: check(lambda *a: fn(*copied(a)))) for what, check in self.hidden)
        return (("the result's type and shape", shaped), ("its inputs left unchanged", kept)) + self.public + hidden

    @property
    def n_public(self) -> int:
        return 2 + len(self.public)

    @property
    def public_checks(self) -> tuple[Check, ...]:
        """The checks a learner runs from the notebook (:attr:`checks` up to :attr:`n_public`)."""
        return self.checks[:self.n_public]
