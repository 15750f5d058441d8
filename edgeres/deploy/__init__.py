"""Deployment configs written from a bundle's own facts: Triton, DeepStream nvinfer, Isaac ROS.

``edgeres config triton|deepstream|isaac-ros BUNDLE -o DIR``. The facts (names,
dtypes, dims, batch profile, recipe, class names) come from the plan sidecar or
the bundle manifest (:mod:`edgeres.deploy.facts`), never from hand-typed values.
"""

from __future__ import annotations

from edgeres.deploy.facts import DeployFacts, facts_from_bundle, preferred_batch_sizes

__all__ = ["DeployFacts", "facts_from_bundle", "preferred_batch_sizes"]
