"""Pieces the chapters' plots and widgets share: input checks that name the wrong argument (a
ValueError/TypeError, not a matplotlib trace), token labels, and the wiring of a widget (CSS classes the
browser tests find, error and text HTML, showing a figure in an Output widget)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

from torch import Tensor

from ..core.validation import as_list, check_int


def require_keys(name: str, rows, keys: Iterable[str]) -> None:
    """``rows``: one mapping or a non-empty list of mappings, each holding every key in ``keys``."""
    items = [rows] if isinstance(rows, Mapping) else rows
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(r, Mapping) for r in items):
        raise TypeError(f"{name} must be a dict or a non-empty list of dicts, got {type(rows).__name__}")
    for row in items:
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"{name} lacks {missing} (it needs {list(keys)})")


def require_same_length(**sequences) -> None:
    """Every keyword is a sequence, all of one non-zero length (x and y values of one plot)."""
    lengths = {name: len(seq) if hasattr(seq, "__len__") and not isinstance(seq, str) else None
               for name, seq in sequences.items()}
    if any(n is None for n in lengths.values()):
        raise TypeError(f"{', '.join(sequences)} must be lists of numbers, got lengths {lengths}")
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"{', '.join(sequences)} must be non-empty and of one length, got {lengths}")


def require_items(name: str, mapping, cls: type) -> None:
    """``mapping``: a non-empty dict whose values are all ``cls``."""
    if not isinstance(mapping, Mapping) or not mapping or not all(isinstance(v, cls) for v in mapping.values()):
        raise TypeError(f"{name} must be a non-empty dict of label -> {cls.__name__}, got {type(mapping).__name__}"
                        + (f" holding {sorted({type(v).__name__ for v in mapping.values()})}"
                           if isinstance(mapping, Mapping) else ""))


def check_exit_list(exit_layers, n_layers, tokens=None) -> list[int]:
    """One sequence's exit layers (a list or a 1-d tensor) as ints in [0, n_layers], one per token if tokens are given.

    A [B, T] ``stats.exit_layers`` (pass ``[0]`` of it), a depth past ``n_layers`` or labels for other
    tokens were drawn without a word, or failed deep inside matplotlib.
    """
    n_layers = check_int("n_layers", n_layers, low=1)
    if isinstance(exit_layers, Tensor) and exit_layers.dim() != 1:
        raise ValueError(f"exit_layers must be one sequence's [T] exit layers, got shape {list(exit_layers.shape)} "
                         "(for a forward's stats.exit_layers [B, T], pass stats.exit_layers[0])")
    exit_layers = [check_int("exit_layers entries", e, low=0, high=n_layers)
                   for e in as_list("exit_layers", exit_layers, "a list of layer counts")]
    if tokens is not None and len(tokens) != len(exit_layers):
        raise ValueError(f"tokens must hold one label per exit layer: {len(tokens)} tokens for "
                         f"{len(exit_layers)} exit layers")
    return exit_layers


def token_label(text: str, width: int = 10) -> str:
    """A token as a short, visible label: spaces as '·', newlines as '\\n', long ones cut with '…'."""
    text = text.replace(" ", "·").replace("\n", "\\n").replace("\t", "\\t").replace("$", r"\$")
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)  # other control bytes as \x1d
    return text if len(text) <= width else text[:width - 1] + "…"


def prompt_text(widgets, prompt: str):
    """The explorers' prompt box (an ipywidgets Text described ``prompt``)."""
    # continuous_update=False: recompute on Enter or blur, not on every keystroke
    return widgets.Text(value=prompt, description="prompt", continuous_update=False,
                        style={"description_width": "initial"}, layout=widgets.Layout(width="600px"))


def with_class(widget, css_class: str):
    """``widget`` with the CSS class ``css_class`` added."""
    widget.add_class(css_class)  # the browser tests find widgets by these classes
    return widget


def error_html(exc: Exception) -> str:
    """An error's message as red HTML, for a widget to show instead of a trace."""
    return f"<span style='color:#b00'>{html.escape(str(exc))}</span>"


WHITESPACE_MARKS = {"\n": "↵", "\t": "⇥", "\r": "␍"}  # drawn before the character they stand for


def show_whitespace(text: str) -> str:
    """``text`` with a mark before each newline, tab and carriage return, so that generated blank lines
    read as marks instead of an empty area (what :func:`text_html` shows, as plain text)."""
    return "".join(WHITESPACE_MARKS.get(c, "") + c for c in text)


def text_html(text: str) -> str:
    """Generated text as HTML: spaces and newlines kept as generate() returned them (pre-wrap), newlines,
    tabs and carriage returns marked in grey (:data:`WHITESPACE_MARKS`), long outputs scrolled in a box."""
    marked = "".join(
        f"<span style='color:#999'>{WHITESPACE_MARKS[c]}</span>{c}" if c in WHITESPACE_MARKS else html.escape(c)
        for c in text)
    return ("<div style='white-space: pre-wrap; font-family: monospace; max-height: 16em; overflow-y: auto; "
            f"border: 1px solid #ddd; padding: 0.3em'>{marked}</div>")


def show_figure(output, fig) -> None:
    """Replace what the Output widget ``output`` shows with the figure ``fig``."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    with output:
        output.clear_output(wait=True)
        display(fig)
    plt.close(fig)  # displayed once as an image; an open figure would show again at the cell's end
