"""Check, before ``make test-colab`` runs the notebooks, that their kernel is the Colab-pinned one.

It starts the kernel the way nbval does (the ``python3`` kernel spec) and asks it for its Python,
whether it sees ``google.colab`` and its ipywidgets and IPython versions.
"""

import json
import sys
from pathlib import Path

from jupyter_client.manager import start_new_kernel

PROBE = ("import sys, json, IPython, ipywidgets; print(json.dumps([sys.executable, 'google.colab' in sys.modules, "
         "ipywidgets.__version__, IPython.__version__]))")


def kernel_facts() -> list:
    manager, client = start_new_kernel(kernel_name="python3")
    lines = []
    try:
        client.execute_interactive(PROBE, timeout=60, output_hook=lambda msg: lines.append(
            msg["content"]["text"]) if msg["msg_type"] == "stream" else None)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return json.loads("".join(lines))


def main() -> None:
    executable, colab, widgets_version, ipython_version = kernel_facts()
    problems = []
    if Path(executable) != Path(sys.executable):
        problems.append(f"the kernel runs {executable}, not this environment's {sys.executable}")
    if not colab:
        problems.append("the kernel does not see google.colab: is IPYTHONDIR set to the fake-Colab profile?")
    if not widgets_version.startswith("7."):
        problems.append(f"ipywidgets {widgets_version} in the kernel, Colab has 7.7.1")
    if problems:
        sys.exit("Colab kernel check failed:\n  " + "\n  ".join(problems))
    print(f"Colab kernel: {executable}, google.colab faked, ipywidgets {widgets_version}, IPython {ipython_version}")


if __name__ == "__main__":
    main()
