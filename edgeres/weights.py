"""Load weights safely: plain state dicts, checkpoint dicts, or safetensors.

Pickled checkpoints are read with ``torch.load(..., weights_only=True)``: a
file that needs arbitrary unpickling is refused, never executed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from edgeres.errors import WeightsError

_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net", "weights")
_SHOW = 3


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state dict from ``.pth``/``.pt`` (weights-only) or ``.safetensors``.

    A checkpoint dict holding it under ``state_dict`` or ``model`` is
    unwrapped, and a ``module.`` prefix left by DataParallel is stripped.

    Raises:
        WeightsError: missing, truncated, unsafe, or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        except Exception as exc:
            raise WeightsError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "global" not in str(exc).lower():
                raise WeightsError(f"{path} is not a readable PyTorch checkpoint (truncated?): {_first_line(exc)}") from exc
            raise WeightsError(
                f"refused {path}: it needs arbitrary unpickling, which could run code; "
                "re-save it as a plain state dict (torch.save(model.state_dict(), ...)) or as .safetensors"
            ) from exc
        except Exception as exc:  # torch raises many types for truncated/foreign files
            raise WeightsError(
                f"{path} is not a readable PyTorch checkpoint (truncated or another format?): {_first_line(exc)}"
            ) from exc
    return _unwrap(obj, path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path} holds no state dict (expected a mapping of names to tensors)")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise WeightsError(
            f"{path} holds no tensors at the top level or under {', '.join(_NESTED_KEYS)}"
        )
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def describe_mismatch(expected: Mapping[str, tuple[int, ...]], received: Mapping[str, Tensor]) -> str:
    """One readable line: missing/unexpected keys and shape mismatches, first few with counts."""
    missing = [k for k in expected if k not in received]
    unexpected = [k for k in received if k not in expected]
    shapes = [
        f"{k} {tuple(received[k].shape)} vs {expected[k]}"
        for k in expected
        if k in received and tuple(received[k].shape) != expected[k]
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f", ... {len(items) - _SHOW} more" if len(items) > _SHOW else ""
            parts.append(f"{len(items)} {label} ({', '.join(items[:_SHOW])}{more})")
    return "; ".join(parts)


def guess_architecture(state_dict: Mapping[str, Tensor]) -> str | None:
    """The registry architecture whose keys and shapes (classifier aside) fit ``state_dict``."""
    from edgeres.models.registry import MODELS, create_model

    received = {k: tuple(v.shape) for k, v in state_dict.items()}
    num_classes = received.get("fc.weight", (None,))[0]
    in_channels = received.get("conv1.weight", (None, None))[1]
    for name, spec in MODELS.items():
        for options in [{}] + [{k: v} for k, vals in spec.options.items() for v in vals[1:]]:
            with torch.device("meta"):
                model = create_model(name, num_classes=num_classes, in_channels=in_channels, **options)
            if _shapes(model) == received:
                return name
    return None


def infer_model_kwargs(state_dict: Mapping[str, Tensor]) -> dict[str, int]:
    """num_classes and in_channels implied by a ResNet state dict."""
    kwargs = {}
    if "fc.weight" in state_dict and state_dict["fc.weight"].dim() == 2:
        kwargs["num_classes"] = int(state_dict["fc.weight"].shape[0])
    if "conv1.weight" in state_dict and state_dict["conv1.weight"].dim() == 4:
        kwargs["in_channels"] = int(state_dict["conv1.weight"].shape[1])
    return kwargs


def load_weights(model: nn.Module, weights: str | os.PathLike[str] | Mapping[str, Tensor], arch: str | None = None) -> nn.Module:
    """Load ``weights`` into ``model`` strictly, with one readable error on mismatch.

    Args:
        model: the model to fill (in place).
        weights: a path (see :func:`read_state_dict`) or a state dict.
        arch: the model's registry name, used in the error message.

    Raises:
        WeightsError: unreadable file, or keys/shapes that do not fit; the
            message names the architecture the weights look like, if any.
    """
    state_dict = read_state_dict(weights) if isinstance(weights, (str, os.PathLike)) else dict(weights)
    expected = _shapes(model)
    detail = describe_mismatch(expected, state_dict)
    if detail:
        guess = guess_architecture(state_dict)
        hint = f"; these weights look like {guess}" if guess and guess != arch else ""
        raise WeightsError(f"weights do not fit {arch or type(model).__name__}: {detail}{hint}")
    model.load_state_dict(state_dict, strict=True)
    return model


def model_from_weights(
    arch: str, weights: str | os.PathLike[str] | None = None, **kwargs: Any
) -> nn.Module:
    """Build ``arch`` (eval mode) and load ``weights``; classes/channels follow the weights."""
    from edgeres.models.registry import create_model

    if weights is None:
        return create_model(arch, **kwargs)
    state_dict = read_state_dict(weights)
    kw = {**infer_model_kwargs(state_dict), **{k: v for k, v in kwargs.items() if v is not None}}
    model = create_model(arch, **kw)
    return load_weights(model, state_dict, arch).eval()
