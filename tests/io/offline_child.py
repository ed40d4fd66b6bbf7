"""Run ``load_pretrained("smollm2-135m")`` in a child process, for the fault tests in test_cache_faults.py.

Usage: ``python offline_child.py XDG_CACHE_HOME (real | FAKE_GGUF TINY_MODEL_FOLDER)``. With ``real`` the true
GGUF is converted (~20 s of CPU); otherwise the conversion is replaced by loading a tiny model from a
folder, so that a test can kill many conversions in seconds.
"""

import os
import pathlib
import sys

os.environ["XDG_CACHE_HOME"] = sys.argv[1]

from anee_lite.io import loading

if sys.argv[2] != "real":
    fake_gguf, tiny = pathlib.Path(sys.argv[2]), sys.argv[3]

    def fake_convert(gguf_path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny)

    loading._find_gguf = lambda: fake_gguf
    loading._convert_gguf = fake_convert

model, tokenizer = loading.load_pretrained(loading.OFFLINE_ALIAS)
print("loaded", type(model).__name__, flush=True)
