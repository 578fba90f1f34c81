"""Data keys in use: loading, caching, rotation and crypto-shredding, stored in the control plane.

``labelvault.crypto`` holds the primitives (envelope format, key providers); this package keeps
the wrapped keys of every scope (a project, or ``"control"``) in ``lv_control.data_keys`` and
hands out keyrings to the code that encrypts.
"""

from labelvault.keys.sealer import ControlSealer
from labelvault.keys.service import KeyService

__all__ = ["ControlSealer", "KeyService"]
