"""tests/model: the model tools under tools/model are imported from the repository root."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tools` is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))
