"""Find the files edgeres ships: calibration data/recipes (``calib/``) and target profiles (``targets/``).

In a wheel they live inside the package (``edgeres/_shipped/<kind>``); in a
source checkout or editable install they are the repository's top-level
folders. Both are found the same way.
"""

from __future__ import annotations

from pathlib import Path

from edgeres.errors import EdgeresError

_PACKAGE_DIR = Path(__file__).resolve().parent
_KINDS = ("calib", "targets")


def shipped_dir(kind: str) -> Path:
    """The folder of shipped ``kind`` files (``"calib"`` or ``"targets"``)."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, received {kind!r}")
    for candidate in (_PACKAGE_DIR / "_shipped" / kind, _PACKAGE_DIR.parent / kind):
        if candidate.is_dir():
            return candidate
    raise EdgeresError(
        f"edgeres' shipped {kind}/ folder is missing (looked in {_PACKAGE_DIR / '_shipped' / kind} "
        f"and {_PACKAGE_DIR.parent / kind}); reinstall edgeres"
    )


def shipped_file(kind: str, *parts: str) -> Path:
    """A shipped file; a clear error if it is absent."""
    path = shipped_dir(kind).joinpath(*parts)
    if not path.exists():
        raise EdgeresError(f"shipped file {path} is missing; reinstall edgeres")
    return path
