"""Hooks: read or replace an activation inside the forward pass, by name, with TransformerLens's names and shapes.

A hook is a function ``fn(tensor, name)``. It returns the replacement, a tensor of the same shape, or
None to leave the activation as it was (a hook that only looks). :meth:`UnrolledModel.forward` takes
``hooks={name: fn}``; the hook points of layer ``l``, in the order the forward reaches them:

==================================  ================================  =============================================
name                                shape                             what it is
==================================  ================================  =============================================
``blocks.{l}.hook_resid_pre``       ``[B, T, d_model]``               the residual stream entering block ``l``
``blocks.{l}.attn.hook_pattern``    ``[B, n_heads, T, T_k]``          attention probabilities (each row sums to 1)
``blocks.{l}.attn.hook_z``          ``[B, T, n_heads, d_head]``       each head's output, before ``W_O``
``blocks.{l}.hook_resid_mid``       ``[B, T, d_model]``               after the attention output is added
``blocks.{l}.mlp.hook_post``        ``[B, T, d_mlp]``                 the MLP hidden activation entering ``W_out``
``blocks.{l}.hook_resid_post``      ``[B, T, d_model]``               the block's output
==================================  ================================  =============================================

``T_k`` counts the cached tokens too. Hooks see what the forward computes after the masks
(``head_mask``, ``mlp_mask``), and what they return is what the rest of the forward uses (and what
``return_resid``/``return_patterns`` record). A hook runs only at layers the call runs: not past the
deepest exit, and at a skipped layer (``skip_layers``) only the three residual points, in order, on
the unchanged residual. Rows of tokens that exited below a layer carry their frozen residual there, and
what a residual hook returns for them is dropped: an exited token keeps the output of its own exit.
Heads of a key/value group the ``head_mask`` removes whole are never computed: they read as zero in
``hook_pattern`` and ``hook_z``, and what a hook writes there is not used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from .architectures import ModelDims

HOOK_POINTS = ("hook_resid_pre", "attn.hook_pattern", "attn.hook_z", "hook_resid_mid", "mlp.hook_post",
               "hook_resid_post")  # in the order one block reaches them

Hook = Callable[[Tensor, str], "Tensor | None"]
LayerHooks = dict[str, Hook]  # hook point -> hook, for one layer


def hook_names(dims: ModelDims) -> list[str]:
    """Every hook name of a model of these sizes, layer by layer, in the order the forward reaches them."""
    return [f"blocks.{layer}.{point}" for layer in range(dims.n_layers) for point in HOOK_POINTS]


def check_hooks(dims: ModelDims, hooks) -> dict[int, LayerHooks] | None:
    """``hooks`` ({name: fn} or None) -> {layer: {point: fn}}, or None when there are none.

    Raises:
        TypeError: ``hooks`` is not a mapping, a name is not a string or a hook is not callable.
        ValueError: a name is not a hook point of this model (the message lists the valid ones).
    """
    if hooks is None:
        return None
    if not isinstance(hooks, Mapping):
        raise TypeError(f"hooks must be a dict {{name: fn}} (fn(tensor, name) returns a replacement or None), "
                        f"got {type(hooks).__name__}")
    by_layer: dict[int, LayerHooks] = {}
    for name, fn in hooks.items():
        layer, point = _parse(dims, name)
        if not callable(fn):
            raise TypeError(f"hooks[{name!r}] must be a function fn(tensor, name), got {type(fn).__name__}")
        by_layer.setdefault(layer, {})[point] = fn
    return by_layer or None


def check_hook_names(dims: ModelDims, names) -> list[str]:
    """One hook name or several -> a non-empty list, each a hook point of this model (else the valid ones are listed)."""
    names = [names] if isinstance(names, str) else names
    if isinstance(names, Mapping) or not isinstance(names, (list, tuple, set, frozenset)) or not names:
        raise TypeError(f"names must be a hook name or a non-empty list of them, e.g. ['blocks.0.hook_resid_post'], "
                        f"got {names!r}")
    for name in names:
        _parse(dims, name)
    return list(names)


def _parse(dims: ModelDims, name) -> tuple[int, str]:
    """``'blocks.{l}.{point}'`` -> (l, point); anything else is an error listing the valid names."""
    if not isinstance(name, str):
        raise TypeError(f"hook names must be strings such as 'blocks.0.hook_resid_pre', got {name!r}")
    prefix, _, point = name.partition(".")[2].partition(".") if name.startswith("blocks.") else ("", "", "")
    if prefix.isdigit() and int(prefix) < dims.n_layers and str(int(prefix)) == prefix and point in HOOK_POINTS:
        return int(prefix), point
    raise ValueError(f"unknown hook name {name!r}; the valid names are 'blocks.{{l}}.{{point}}' with l in "
                     f"0..{dims.n_layers - 1} and point one of {list(HOOK_POINTS)} "
                     f"(e.g. {', '.join(repr(n) for n in hook_names(dims)[:len(HOOK_POINTS)])})")


def run_hook(hooks: LayerHooks, layer: int, point: str, tensor: Tensor) -> Tensor:
    """``tensor`` passed through the hook at ``point`` of ``layer`` if there is one; its answer checked."""
    fn = hooks.get(point)
    if fn is None:
        return tensor
    name = f"blocks.{layer}.{point}"
    out = fn(tensor, name)
    if out is None:
        return tensor
    if not isinstance(out, Tensor):
        raise TypeError(f"the hook at {name!r} must return a tensor or None, got {type(out).__name__}")
    if out.shape != tensor.shape:
        raise ValueError(f"the hook at {name!r} must return a tensor of the shape it was given, "
                         f"{list(tensor.shape)}, got {list(out.shape)}")
    if not out.is_floating_point():
        raise TypeError(f"the hook at {name!r} must return floating-point values, got {out.dtype}")
    return out.to(tensor.device, tensor.dtype)
