"""The rotating input batches every backend of one run receives (identical arrays on both sides)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgeres.errors import BenchError


@dataclasses.dataclass(frozen=True)
class InputSource:
    """Where benchmark inputs come from: a pool of real samples, or image-like synthetic data.

    Attributes:
        pool: (N, C, H, W) float32 samples already preprocessed by the model's recipe, or None.
        labels: (N,) int labels of the pool, or None (then agreement reports no accuracy).
        description: what the inputs are, for the report.
        seed: seed of the synthetic inputs.
    """

    pool: np.ndarray | None = None
    labels: np.ndarray | None = None
    description: str = "synthetic image-like inputs (smooth random fields + noise, recipe-normalized scale)"
    seed: int = 0

    def batches(self, sample_shape: tuple[int, ...], batch_size: int, count: int) -> list[np.ndarray]:
        """``count`` distinct float32 batches of ``batch_size`` samples of ``sample_shape`` (C, H, W).

        Real samples are taken in order, wrapping around the pool; synthetic
        batches use one seed per buffer. No batch is all zeros.

        Raises:
            BenchError: the pool's sample shape differs from the model's, or a batch would be all zeros.
        """
        if self.pool is not None:
            if tuple(self.pool.shape[1:]) != tuple(sample_shape):
                raise BenchError(
                    f"input data has samples of shape {tuple(self.pool.shape[1:])}, the model expects {tuple(sample_shape)}; "
                    "use data preprocessed with the model's recipe"
                )
            n = self.pool.shape[0]
            out = [np.ascontiguousarray(self.pool[np.arange(k * batch_size, (k + 1) * batch_size) % n], dtype=np.float32)
                   for k in range(count)]
        else:
            from edgeres.export import realistic_inputs

            out = [realistic_inputs((batch_size, *sample_shape), seed=self.seed + k) for k in range(count)]
        for b in out:
            if not np.any(b):
                raise BenchError("an input batch is all zeros, which flatters sparse kernels; use real or random data")
        return out

    def batch_labels(self, batch_size: int, count: int) -> np.ndarray | None:
        """Labels of the samples :meth:`batches` returns, concatenated in buffer order; None without labels."""
        if self.pool is None or self.labels is None:
            return None
        n = self.pool.shape[0]
        return np.concatenate([self.labels[np.arange(k * batch_size, (k + 1) * batch_size) % n] for k in range(count)])

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "samples": None if self.pool is None else int(self.pool.shape[0]), "seed": self.seed}
