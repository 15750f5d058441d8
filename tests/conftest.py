"""Shared fixtures: models with non-trivial BatchNorm statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial running stats and affine params, as a trained model has."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                    m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
    return model


@pytest.fixture
def bn_randomizer():
    return randomize_batchnorm
