"""Golden files of the config generators (tests/data/deploy/); EDGERES_UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "data" / "deploy"


def check_golden(name: str, text: str) -> None:
    """``text`` must equal ``GOLDEN/name`` (bundle-specific absolute paths replaced by the caller)."""
    path = GOLDEN / name
    if os.environ.get("EDGERES_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"golden file {path} missing; run once with EDGERES_UPDATE_GOLDEN=1 and review it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file {path} (review, then EDGERES_UPDATE_GOLDEN=1):\n{text}"
