"""One exception hierarchy for the whole toolkit.

Library code raises subclasses of :class:`EdgeresError` with a message that
says what was expected, what was received and the likely cause. The CLI turns
any of them into one line on stderr and exit code 2.
"""

from __future__ import annotations


class EdgeresError(Exception):
    """Base class of every error edgeres raises on purpose."""


class ArchitectureError(EdgeresError):
    """Unknown architecture or invalid model configuration."""


class WeightsError(EdgeresError):
    """A weights file that cannot be read, is unsafe, or does not fit the model."""


class FoldError(EdgeresError):
    """BatchNorm folding was refused or failed its numerical check."""


class ExportError(EdgeresError):
    """ONNX export failed or its output disagrees with PyTorch."""


class OutputPathError(EdgeresError):
    """An output path that cannot be written."""


class DataError(EdgeresError):
    """Input or calibration data that is missing, empty or of the wrong shape."""


class CalibrationError(EdgeresError):
    """Calibration, calibration cache or accuracy-budget failure."""


class TargetError(EdgeresError):
    """Unknown or invalid device target profile."""


class BuildError(EdgeresError):
    """Engine build or deploy-bundle failure."""


class BundleError(BuildError):
    """A deploy bundle that is incomplete or fails verification."""


class TensorRTUnavailableError(BuildError):
    """The builder's: TensorRT, its CUDA binding or a GPU to build on is missing here.

    The runtime raises :class:`edgeres.runtime.EngineUnavailableError` (an
    :class:`EngineError`) for the same causes when it opens an engine.
    """


class TensorRTVersionError(EdgeresError, ValueError):
    """A TensorRT version string that cannot be read (see :mod:`edgeres.tensorrt_version`)."""


class EngineError(EdgeresError):
    """Runtime engine misuse: wrong inputs, closed engine, mismatched plan."""


class BenchError(EdgeresError):
    """Benchmark misconfiguration."""


class ServeError(EdgeresError):
    """``edgeres serve``: PyTriton missing, bad serving options, or a server that did not come up."""


class DeployConfigError(EdgeresError):
    """A Triton, DeepStream or Isaac ROS config that cannot be generated from a bundle's facts."""
