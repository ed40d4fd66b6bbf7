"""The one convention every exercise check of the series follows.

A check takes the learner's answer first. ``None`` (the template's placeholder), or a function that still
returns ``None``, prints "not answered yet". A wrong answer raises :class:`ExerciseError` whose message
says what is off and how to look for it, never the expected answer. A right one prints one short line.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor


class ExerciseError(AssertionError):
    """A wrong answer to an exercise; the message says what is off and how to look for it."""


class NotAnswered(Exception):
    """The learner's function still returns None (the template's placeholder)."""


def exercise(name: str):
    """Decorate a check: run it unless its answer (first argument) is None; then, or when the learner's
    function still returns None, print 'not answered yet' instead of judging it."""

    def wrap(check):
        first = next(iter(inspect.signature(check).parameters))

        @functools.wraps(check)
        def run(*args, **kwargs):
            answer = args[0] if args else kwargs.get(first)
            try:
                if answer is not None:
                    return check(*args, **kwargs)
            except NotAnswered:
                pass
            print(f"{name}: not answered yet (replace None with your answer and run the cell again)")
            return None

        return run

    return wrap


def correct(name: str, extra: str = "") -> None:
    """Print the one-line verdict of a right answer."""
    print(f"{name}: correct!{' ' + extra if extra else ''}")


def call(name: str, fn: Callable, *args):
    """The learner's ``fn(*args)``; an error inside it becomes one line, not a trace from the checker."""
    if not callable(fn):
        raise ExerciseError(f"{name}: expected a function, got {type(fn).__name__}")
    try:
        result = fn(*args)
    except NotImplementedError:
        raise NotAnswered from None  # a stub that raises instead of returning None is not answered either
    except Exception as error:  # the learner's code: report it in one line, not a trace from the checker
        raise ExerciseError(f"{name}: your function raised {type(error).__name__}: {error}") from error
    if result is None:
        raise NotAnswered
    return result


def number(name: str, got, *, whole: bool = False):
    """A learner's numeric answer as a Python number (a one-element tensor counts); anything else is a wrong answer."""
    if isinstance(got, Tensor):
        if got.numel() != 1:
            raise ExerciseError(f"{name}: expected a single number, got a tensor of shape {tuple(got.shape)}")
        got = got.item()
    integral = isinstance(got, numbers.Integral)  # no float() of it: a huge int would overflow
    if isinstance(got, bool) or not isinstance(got, numbers.Real) or not (
            integral or (math.isfinite(got) and (not whole or got == int(got)))):
        kind = "a whole number" if whole else "a finite number"
        raise ExerciseError(f"{name}: expected {kind}, got {got!r} ({type(got).__name__})")
    return got


def tensor_like(name: str, got, expected: Tensor) -> Tensor:
    """``got`` if it is a tensor of ``expected``'s shape; otherwise a wrong answer saying which shape."""
    if not isinstance(got, Tensor):
        raise ExerciseError(f"{name}: expected a tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise ExerciseError(f"{name}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    return got


def close(a: Tensor, b: Tensor, atol: float = 1e-4) -> bool:
    """Equal up to float32 rounding of the learner's order of operations."""
    return bool(torch.allclose(a.float(), b.float(), atol=atol, rtol=1e-4))
