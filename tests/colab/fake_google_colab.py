"""IPython startup file for ``make test-colab``: the kernel looks like Colab's to the notebooks.

The notebooks' setup cell only asks whether ``"google.colab" in sys.modules``; a bare module answers
that, and the real ``google`` namespace package (protobuf's, for instance) stays untouched. It has a
spec, as an imported module does, because libraries probe it with ``importlib.util.find_spec``.
"""

import importlib.machinery
import sys
import types

_colab = types.ModuleType("google.colab")
_colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", loader=None)
sys.modules.setdefault("google.colab", _colab)
