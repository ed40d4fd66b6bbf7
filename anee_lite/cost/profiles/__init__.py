"""The shipped device profiles, one file each: a module here defining ``PROFILE`` (a
:class:`~anee_lite.cost.device_profile.DeviceProfile`) and ``ORDER`` (its row in tables). Adding a device is
one file plus its test; ``tests/cost/test_devices.py`` checks every profile found here.
"""

import importlib
import pkgutil

from ..device_profile import DeviceProfile


def _shipped() -> dict[str, DeviceProfile]:
    modules = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return {m.PROFILE.name: m.PROFILE for m in sorted(modules, key=lambda m: (m.ORDER, m.PROFILE.name))}


PROFILES: dict[str, DeviceProfile] = _shipped()  # device name -> profile, in table order
