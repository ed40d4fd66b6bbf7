"""The seed's module path for its configuration: ``from anee_lite.config import ANEEConfig`` (ANEE v0.0.1).

The class lives in :mod:`anee_lite.core.config`, beside the budget defaults it shares with the forward.
"""

from .core.config import ANEEConfig

__all__ = ["ANEEConfig"]
