"""``edgeres doctor``: what this device has, and what a bundle or plan needs of it.

Three layers, each testable on its own:

* :mod:`edgeres.doctor.facts` reads the device (files under a root, command
  output through a runner, lazily imported Python bindings) into a frozen
  :class:`~edgeres.doctor.facts.DeviceFacts`. Every reader is a few lines so
  tests on fake trees exercise what runs on a device.
* :mod:`edgeres.doctor.rules` holds NVIDIA's release tables as data (L4T ->
  JetPack -> TensorRT/CUDA/cuDNN, kernel -> L4T) and the checks: functions
  ``(facts, subject) -> list[Problem]``. :func:`~edgeres.doctor.rules.preflight_problems`
  and :func:`~edgeres.doctor.rules.check_preflight` are what ``edgeres compile`` runs.
* :mod:`edgeres.doctor.report` renders facts and problems as a table or JSON.

Nothing here imports TensorRT or CUDA at module load.
"""

from __future__ import annotations

from edgeres.doctor.facts import DeviceFacts, collect_facts
from edgeres.doctor.rules import PreflightError, Problem, check_preflight, diagnose, preflight_problems

__all__ = ["DeviceFacts", "PreflightError", "Problem", "check_preflight", "collect_facts", "diagnose", "preflight_problems"]
