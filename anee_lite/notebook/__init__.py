"""Notebook helpers: model setup, plots and widgets. The only code that imports matplotlib or ipywidgets.

Import the plotting and widget modules explicitly (``from anee_lite.notebook import plots``); this
package itself imports neither, so ``load_notebook_model`` works without them.
"""

from .setup import load_notebook_model

__all__ = ["load_notebook_model"]
