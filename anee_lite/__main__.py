"""``python -m anee_lite``: see :mod:`anee_lite.cli`."""

import sys

from .cli import main

sys.exit(main())
