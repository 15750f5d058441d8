"""Fold BatchNorm into the preceding convolution.

:func:`fuse_conv_bn_weights` is the pure math; :func:`fold_batchnorm` finds
every Conv->BN pair of an eval-mode module by watching one forward pass (so it
works on any model whose forward feeds a conv's output straight into a BN,
whatever its control flow), folds them, and checks the result numerically.
INT8 weights must be quantized after this step, never before.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from edgeres.errors import FoldError

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fuse_conv_bn_weights(
    conv_w: Tensor,
    conv_b: Tensor | None,
    bn_rm: Tensor,
    bn_rv: Tensor,
    bn_eps: float,
    bn_w: Tensor | None,
    bn_b: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Return (weight, bias) of a conv equal to conv followed by an eval-mode BN.

    Computes in float64 and returns the conv weight's dtype. A conv without
    bias and a BN without affine parameters (``bn_w``/``bn_b`` None) are handled.
    """
    dtype = conv_w.dtype
    bias_dtype = conv_b.dtype if conv_b is not None else dtype
    w = conv_w.detach().double()
    b = conv_b.detach().double() if conv_b is not None else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    gamma = bn_w.detach().double() if bn_w is not None else torch.ones_like(b)
    beta = bn_b.detach().double() if bn_b is not None else torch.zeros_like(b)
    scale = gamma * torch.rsqrt(bn_rv.detach().double() + bn_eps)
    fused_w = w * scale.reshape([-1] + [1] * (w.dim() - 1))
    fused_b = (b - bn_rm.detach().double()) * scale + beta
    return fused_w.to(dtype), fused_b.to(bias_dtype)


def fuse_conv_bn_eval(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of ``conv`` with ``bn`` folded in; both must be in eval mode."""
    if conv.training or bn.training:
        raise FoldError("BatchNorm folding needs eval mode; call model.eval() first")
    if bn.running_mean is None or bn.running_var is None:
        raise FoldError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    if conv.weight.shape[0] != bn.num_features:
        raise FoldError(
            f"conv has {conv.weight.shape[0]} output channels but BatchNorm has {bn.num_features} features"
        )
    fused = copy.deepcopy(conv)
    w, b = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    fused.weight = nn.Parameter(w, conv.weight.requires_grad)
    fused.bias = nn.Parameter(b, conv.weight.requires_grad)
    return fused


def find_conv_bn_pairs(model: nn.Module, example_input: Tensor) -> list[tuple[str, str]]:
    """(conv name, bn name) for each BN whose input is exactly one conv's output.

    Runs ``model`` once on ``example_input`` with hooks. A conv whose output
    also feeds another module is not paired; one whose output also feeds a
    functional op cannot be seen by hooks, which is why :func:`fold_batchnorm`
    verifies the folded model numerically.
    """
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, tuple[str, Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    consumers: dict[int, int] = {}
    handles = []

    def conv_hook(module: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        produced[id(out)] = (names[module], out)  # keep the tensor alive so ids stay unique

    def any_pre_hook(module: nn.Module, inp: tuple[Tensor, ...]) -> None:
        for t in inp:
            src = produced.get(id(t))
            if src is not None and src[1] is t:  # ids of freed tensors are reused
                consumers[id(t)] = consumers.get(id(t), 0) + 1

    def bn_pre_hook(module: nn.Module, inp: tuple[Tensor, ...]) -> None:
        src = produced.get(id(inp[0]))
        if src is not None:
            pairs.append((src[0], names[module]))

    try:
        for module in model.modules():
            if isinstance(module, _CONV_TYPES):
                handles.append(module.register_forward_hook(conv_hook))
            if isinstance(module, _BN_TYPES):
                handles.append(module.register_forward_pre_hook(bn_pre_hook))
            if not list(module.children()):
                handles.append(module.register_forward_pre_hook(any_pre_hook))
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    bn_seen: set[str] = set()
    unique = []
    out_ids = {name: key for key, (name, _) in produced.items()}
    for conv_name, bn_name in pairs:
        if consumers.get(out_ids.get(conv_name, -1), 0) > 1:
            continue
        if bn_name in bn_seen:
            raise FoldError(f"BatchNorm {bn_name} runs more than once per forward; cannot fold it into one conv")
        bn_seen.add(bn_name)
        unique.append((conv_name, bn_name))
    return unique


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _default_input(model: nn.Module) -> Tensor:
    for m in model.modules():
        if isinstance(m, _CONV_TYPES):
            spatial = [64] * (m.weight.dim() - 2)
            return torch.randn(2, m.in_channels, *spatial, dtype=m.weight.dtype, device=m.weight.device)
    raise FoldError("model has no convolution to fold BatchNorm into")


def fold_batchnorm(
    model: nn.Module,
    example_input: Tensor | None = None,
    *,
    rtol: float = 1e-4,
    strict: bool = True,
) -> nn.Module:
    """Return a copy of ``model`` with every Conv->BN pair folded into the conv.

    The original model is untouched. Folded BNs become ``nn.Identity`` so
    module names (and so ONNX names) stay those of the original.

    Args:
        model: an eval-mode module.
        example_input: one input batch for tracing the pairs and checking the
            result; random 64x64 (per spatial dim) inputs if None.
        rtol: largest allowed relative error of the folded outputs.
        strict: raise if any BatchNorm is left unfolded.

    Raises:
        FoldError: training mode, a BN that follows no conv (when strict), or a
            folded model whose outputs differ from the original's.
    """
    if model.training:
        raise FoldError("BatchNorm folding needs eval mode; call model.eval() first (received a model in training mode)")
    if example_input is None:
        example_input = _default_input(model)
    folded = copy.deepcopy(model)
    try:
        pairs = find_conv_bn_pairs(folded, example_input)
    except FoldError:
        raise
    except Exception as exc:  # the user's forward failed on the example input
        raise FoldError(
            f"could not run the model on an example input of shape {tuple(example_input.shape)} "
            f"to find Conv->BN pairs ({type(exc).__name__}: {exc}); pass example_input"
        ) from exc
    for conv_name, bn_name in pairs:
        conv = folded.get_submodule(conv_name)
        bn = folded.get_submodule(bn_name)
        _set_submodule(folded, conv_name, fuse_conv_bn_eval(conv, bn))
        _set_submodule(folded, bn_name, nn.Identity())
    left = [n for n, m in folded.named_modules() if isinstance(m, _BN_TYPES)]
    if left and strict:
        raise FoldError(
            f"{len(left)} BatchNorm layer(s) follow no convolution and cannot be folded: "
            f"{', '.join(left[:5])}{' ...' if len(left) > 5 else ''} (pass strict=False to keep them)"
        )
    with torch.no_grad():
        reference = model(example_input)
        result = folded(example_input)
    err = relative_error(reference, result)
    if not err <= rtol:
        raise FoldError(
            f"folded model disagrees with the original: relative error {err:.2e} > {rtol:.0e}; "
            "a conv output probably feeds something besides its BatchNorm"
        )
    return folded


def relative_error(reference: Tensor, result: Tensor) -> float:
    """max |a - b| / max |a| (0 when both are zero)."""
    reference = reference.detach().double()
    denom = reference.abs().max().item()
    diff = (reference - result.detach().double()).abs().max().item()
    return diff / denom if denom > 0 else diff
