"""Deployment: export a trained policy (TorchScript, ONNX, npz) and run it with low latency.

* :mod:`impala_hybrid.deploy.inference` (no torch import): :class:`NumpyPolicy`, the fastest
  batch-1 path, and :func:`load_policy` for ``npz``/``onnx`` artifacts on hosts without torch;
* :mod:`impala_hybrid.deploy.export` (imports torch): :func:`export_model`,
  :func:`load_exported`.

The export names are resolved lazily, so ``import impala_hybrid.deploy`` stays torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impala_hybrid.deploy.inference import (
    ArtifactError,
    DeployedPolicy,
    NumpyPolicy,
    OnnxPolicy,
    PolicySpec,
    UnsupportedModelError,
    load_policy,
    read_sidecar,
    sidecar_path,
)

if TYPE_CHECKING:
    from impala_hybrid.deploy.export import (
        FORMATS,
        ONNX_OPSET,
        DeterministicActor,
        TorchScriptPolicy,
        export_model,
        load_exported,
    )

_LAZY = {
    "FORMATS",
    "ONNX_OPSET",
    "DeterministicActor",
    "TorchScriptPolicy",
    "export_model",
    "load_exported",
}

__all__ = [
    "FORMATS",
    "ONNX_OPSET",
    "ArtifactError",
    "DeployedPolicy",
    "DeterministicActor",
    "NumpyPolicy",
    "OnnxPolicy",
    "PolicySpec",
    "TorchScriptPolicy",
    "UnsupportedModelError",
    "export_model",
    "load_exported",
    "load_policy",
    "read_sidecar",
    "sidecar_path",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from impala_hybrid.deploy import export

        return getattr(export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
