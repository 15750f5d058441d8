"""The ResNet family of the paper, ImageNet and CIFAR variants, behind one registry."""

from edgeres.models.cifar import CifarResNet, resnet20, resnet32, resnet44, resnet56, resnet110
from edgeres.models.registry import MODELS, ModelSpec, create_model, get_spec, list_models, recipe_for
from edgeres.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet101, resnet152

__all__ = [
    "MODELS",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "ModelSpec",
    "ResNet",
    "create_model",
    "get_spec",
    "list_models",
    "recipe_for",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet101",
    "resnet110",
    "resnet152",
]
