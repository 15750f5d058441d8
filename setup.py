"""Ship the top-level ``targets/`` and ``calib/`` folders inside the wheel as ``edgeres/_shipped/<kind>``.

Everything else is in pyproject.toml. In a checkout or an editable install
``edgeres.resources.shipped_dir`` finds the top-level folders instead, so both
layouts resolve the same files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("targets", "calib")


class BuildPyWithShipped(build_py):
    """build_py that also copies the shipped folders into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # editable installs read the folders in place
        root = Path(__file__).resolve().parent
        for kind in SHIPPED:
            src = root / kind
            if not src.is_dir():
                continue
            dst = Path(self.build_lib) / "edgeres" / "_shipped" / kind
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


setup(cmdclass={"build_py": BuildPyWithShipped})
