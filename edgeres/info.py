"""Model statistics counted from the model itself: parameters, MACs, sizes, layers."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Counts for one model at one input size (batch 1)."""

    params: int
    macs: int
    input_shape: tuple[int, ...]
    conv_layers: int
    bn_layers: int
    linear_layers: int

    @property
    def weights_bytes(self) -> dict[str, int]:
        """Weight storage at FP32, FP16 and INT8 (bytes, one byte per parameter at INT8)."""
        return {"fp32": self.params * 4, "fp16": self.params * 2, "int8": self.params}

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "weights_bytes": self.weights_bytes}


def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates of convs and linear layers in one forward pass.

    This is what the paper's Table 1 calls FLOPs (multiply-adds); pooling,
    BatchNorm, additions and activations are not counted, as in the paper.
    """
    total = 0
    handles = []

    def conv_hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        kernel = m.weight[0].numel()  # in_channels / groups * prod(kernel)
        total += out.numel() * kernel

    def linear_hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    try:
        for m in model.modules():
            if isinstance(m, _CONVS):
                handles.append(m.register_forward_hook(conv_hook))
            elif isinstance(m, nn.Linear):
                handles.append(m.register_forward_hook(linear_hook))
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return int(total // example_input.shape[0])


def model_info(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelInfo:
    """Count parameters, MACs per image and layers of ``model`` at ``input_shape`` (C, H, W)."""
    was_training = model.training
    model.eval()
    try:
        macs = count_macs(model, torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    modules = list(model.modules())
    return ModelInfo(
        params=sum(p.numel() for p in model.parameters()),
        macs=macs,
        input_shape=tuple(input_shape),
        conv_layers=sum(isinstance(m, _CONVS) for m in modules),
        bn_layers=sum(isinstance(m, _BNS) for m in modules),
        linear_layers=sum(isinstance(m, nn.Linear) for m in modules),
    )
