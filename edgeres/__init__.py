"""edgeres: a ResNet from PyTorch to a fast, accurate TensorRT engine, proven against FP32.

Importing ``edgeres`` loads neither torch nor onnx: the heavy parts of the API
are resolved on first use, so ``edgeres.runtime`` and ``edgeres --help`` stay
light on a robot without PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeres.errors import EdgeresError

__version__ = "0.1.0"

_LAZY = {
    "models": ("edgeres.models", None),
    "create_model": ("edgeres.models", "create_model"),
    "fold_batchnorm": ("edgeres.fold", "fold_batchnorm"),
    "fuse_conv_bn_weights": ("edgeres.fold", "fuse_conv_bn_weights"),
    "export_onnx": ("edgeres.export", "export_onnx"),
    "load_weights": ("edgeres.weights", "load_weights"),
    "model_info": ("edgeres.info", "model_info"),
    "Recipe": ("edgeres.recipe", "Recipe"),
}

__all__ = ["EdgeresError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'edgeres' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
