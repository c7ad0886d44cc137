"""Running a code task's checks on a learner's function, and what the learner is told.

A check calls the learner's function on small inputs and raises :class:`Wrong` with one line that
names what is wrong (a shape, a value in a simple case, an invariance); :func:`grade_checks` runs a task's
checks and returns a :class:`Report` (shown as Markdown in a notebook). A function still raising
``NotImplementedError`` is "not written yet", never a traceback; any other exception is reported
by its type and message.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch


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
        return "\n".join([head, ""] + [f"- {'✓' if o.ok else '✗'} {o.check}" + ("" if o.ok else f": {o.message}")
                                       for o in self.outcomes])


def grade_checks(task: str, fn: Callable, checks: Sequence[Check]) -> Report:
    """Each check of ``checks`` on ``fn``; stops at the first ``NotImplementedError``."""
    outcomes = []
    for what, check in checks:
        try:
            check(fn)
        except NotImplementedError:
            return Report(task, (), written=False)
        except Wrong as err:
            outcomes.append(Outcome(what, False, str(err)))
        except Exception as err:  # the learner's code raised: say what, not a traceback
            outcomes.append(Outcome(what, False, f"your function raised {type(err).__name__}: {err}"))
        else:
            outcomes.append(Outcome(what, True))
    return Report(task, tuple(outcomes))


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
    if not torch.allclose(out, want, atol=atol, rtol=1e-4):
        worst = int((out - want).abs().flatten().argmax())
        raise Wrong(f"{what}: not the expected values (largest gap at flat index {worst}: "
                    f"{float(out.flatten()[worst]):.4g} instead of {float(want.flatten()[worst]):.4g})")


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
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        out = out.item()
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise Wrong(f"{what} should be a number (float), got {type(out).__name__}")
    if abs(out - want) > rtol * max(abs(want), 1e-8):
        raise Wrong(f"{what} should be {want:.6g}, got {out:.6g}")


def form(out, want) -> None:
    """:class:`Wrong` unless ``out`` has the type of ``want`` (a tensor of its shape and dtype, a dict of
    such tensors with its keys, or a number); the values are not compared."""
    if isinstance(want, torch.Tensor):
        tensor(out, want)
    elif isinstance(want, dict):
        if not isinstance(out, dict) or sorted(out) != sorted(want):
            raise Wrong(f"the result should be a dict of tensors with the keys {sorted(want)}, got "
                        f"{sorted(out) if isinstance(out, dict) else type(out).__name__}")
        for k in want:
            tensor(out[k], want[k], f"the result's weight {k!r}")
    elif isinstance(out, bool) or not isinstance(out, (int, float)) and not (
            isinstance(out, torch.Tensor) and out.numel() == 1):
        raise Wrong(f"the result should be a number (float), got {type(out).__name__}")


def untouched(before: dict | torch.Tensor, after: dict | torch.Tensor, what: str) -> None:
    """:class:`Wrong` if the learner's function changed its input ``what`` in place."""
    pairs = [(before[k], after[k]) for k in before] if isinstance(before, dict) else [(before, after)]
    if not all(torch.equal(b, a) for b, a in pairs):
        raise Wrong(f"your function changed {what} in place: compute a new tensor instead (e.g. x.clone() first)")
