"""What the forward needs from an exit controller: a small written interface.

The forward (:meth:`anee_lite.core.model.UnrolledModel.forward`) knows nothing about lenses,
probes or thresholds; it calls these four methods, in this order, once per call:

1. ``reset(positions)`` before the first layer, with the [B, T] positions of the call's tokens;
2. ``controller(layer, resid, active)`` before each layer ``layer = 1 .. n_layers - 1`` while
   some token still runs: ``resid`` [B, T, d_model] is the residual after ``layer`` layers,
   ``active`` [B, T] the tokens still running; it returns [B, T] bool, True for tokens that stop
   here (they keep ``layer`` layers; the forward ignores True for tokens that already stopped);
3. ``exit_logits()`` right after each such call: the [B, T, d_vocab] logits the check just made
   computed anyway (a lens-based check reads out every token), or None. For tokens that stopped
   at this call the forward uses them as the output, so a lens is unembedded once, not twice;
4. ``readout(resid, exit_layers)`` at the end, only for tokens whose logits were not taken from
   ``exit_logits``: [B, T, d_model] final residuals and their [B, T] exit layers -> the residuals
   to unembed (identity, or a tuned lens's translator).

A controller may also say ``stops_nobody = True`` (an attribute or property; absent means False): it
would stop no token in this call (e.g. calibrated to "never exit"), so the forward skips step 2 and 3
and pays nothing for decisions; ``reset`` and ``readout`` are still called. And it may define
``may_stop_at(layer) -> bool``: False promises that the call before ``layer`` stops nobody (a layer
where it makes no check), so the forward still calls it (it may remember the residual) but does not
read the answer.

:class:`anee_lite.adaptive.ExitController` implements it for every controller in the library. A controller
that reads a model's weights says which in a ``model`` attribute (ExitController: its lens's model);
the forward refuses one built for another model. A
plain function ``fn(layer, resid, active) -> stop`` is accepted too (:func:`as_controller`): it has
no per-call state, computes no logits and reads out the residual as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Controller(Protocol):
    """Decides, before each layer, which tokens stop (see the module docstring for the call order)."""

    def reset(self, positions: Tensor) -> None:
        """A forward call starts: clear per-call state; ``positions`` [B, T] are its tokens' positions."""

    def __call__(self, layer: int, resid: Tensor, active: Tensor) -> Tensor:
        """[B, T, d_model] residual after ``layer`` layers, [B, T] running -> [B, T] bool stop."""

    def exit_logits(self) -> Tensor | None:
        """[B, T, d_vocab] output logits computed by the check just made, or None if it made none."""

    def readout(self, resid: Tensor, exit_layers: Tensor) -> Tensor:
        """[B, T, d_model] final residuals, [B, T] exit layers -> [B, T, d_model] residuals to unembed."""


class FunctionController:
    """A plain function ``fn(layer, resid, active) -> stop`` [B, T] as a :class:`Controller`."""

    def __init__(self, fn: Callable[[int, Tensor, Tensor], Tensor]):
        self.fn = fn

    def reset(self, positions: Tensor) -> None:
        pass  # a function keeps no per-call state

    def __call__(self, layer: int, resid: Tensor, active: Tensor) -> Tensor:
        return self.fn(layer, resid, active)

    def exit_logits(self) -> None:
        return None

    def readout(self, resid: Tensor, exit_layers: Tensor) -> Tensor:
        return resid


def as_controller(controller) -> Controller | None:
    """``controller`` itself if it implements :class:`Controller`, a plain function wrapped, None kept."""
    if controller is None or isinstance(controller, Controller):
        return controller
    if callable(controller):
        return FunctionController(controller)
    raise TypeError("controller must implement anee_lite.core.controller.Controller (reset, __call__, exit_logits, "
                    f"readout) or be a function (layer, resid, active) -> stop; got {type(controller).__name__}")
