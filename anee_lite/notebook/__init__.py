"""Notebook helpers: model setup, one module per chapter for its plots and widgets, and the exercise checks.

The chapter modules (:mod:`.gpt2_internals` for notebook 01, :mod:`.logit_lens`, :mod:`.early_exit_budget`,
:mod:`.kv_cache_and_cost`, :mod:`.adaptive_exit`, :mod:`.sparsity`, :mod:`.virtual_accelerator`,
:mod:`.self_speculative` for 08) are the only code that imports matplotlib or ipywidgets; every check of the
series is in :mod:`.exercises`, in one convention; :mod:`.parts` holds what several chapters share. This
package itself imports neither library, so ``load_notebook_model`` works without them.
"""

from .setup import load_notebook_model

__all__ = ["load_notebook_model"]
