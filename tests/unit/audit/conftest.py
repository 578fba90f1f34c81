"""Make ``src`` importable when the package is not installed (pytest has no pythonpath set)."""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("labelvault") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "src"))
