"""Export a trained ``ActorCritic`` as a self-contained deterministic policy, and load it back.

What is exported is not the training network but :class:`DeterministicActor`: ``obs [N,
obs_dim]`` (plus the LSTM state ``h, c [N, H]`` for a recurrent model) to the deployed action
in env units, as plain tensors:

* ``discrete`` int64 ``[N]``, the argmax of the logits (for categorical and hybrid kinds); a
  policy exported with ``discrete_choice="sample"`` takes one more input, ``gumbel [N, K]``,
  and returns the argmax of the log-probabilities plus that noise: a draw from the policy
  when the noise is standard Gumbel, which every loaded policy feeds from its own seeded
  generator (:func:`~impala_hybrid.deploy.inference.gumbel_noise`), the mode when it is 0;
* ``continuous`` float32 ``[N, D]`` in ``[low, high]`` (for the continuous and hybrid kinds):
  the squashed Gaussian's ``squash(mean)`` or the Beta's mode, for gated heads the chosen
  action's parameter set;
* ``h_out``, ``c_out`` ``[N, H]``: the next LSTM state (recurrent models only).

This is exactly ``model.distribution(params).mode()`` then ``to_env`` (same ops in the same
order), but written without the distribution objects: those validate bounds with
data-dependent Python branches, which neither tracing nor ``torch.export`` can capture (the
Beta's mode calls the distribution module's own ``beta_concentration`` and ``beta_mode``). The
log-std and value outputs are not part of the artifact's outputs. A network trained with
its trunk in bfloat16 (``ModelConfig.trunk_dtype``) is exported in float32, from the same
weights: the artifact's actions are the float32 network's, and differ from what the bf16
network computes by its rounding (on a trained UAV preset policy, 256 states: intensities
at most 0.0013 apart in env units, logits 0.007). With observation
normalisation (``ModelConfig.obs_norm``) the running statistics at export time are part of
the artifact, as constants: the deployed policy never updates them.

Formats (``export_model(..., format=...)``):

* ``torchscript``: ``torch.jit.trace`` of the actor (``torch.jit`` is deprecated upstream but
  still the one torch format that loads without Python source; traced, so no Python code is
  serialised), loaded with ``torch.jit.load``;
* ``onnx``: ``torch.onnx.export`` (the ``torch.export``-based exporter) at a fixed opset
  :data:`ONNX_OPSET` with a dynamic batch axis; runs on ONNX Runtime without torch;
* ``npz``: the weights as named float32 arrays (``np.load(allow_pickle=False)``) for
  :class:`~impala_hybrid.deploy.inference.NumpyPolicy`, the fastest batch-1 path, NumPy only.

Every artifact gets a JSON sidecar ``<artifact>.json`` (:func:`~impala_hybrid.deploy.inference.
sidecar_path`): the :class:`~impala_hybrid.deploy.inference.PolicySpec` (action kind, keys,
container, bounds, ``obs_dim``, model config), input/output names, the opset and the artifact's
SHA-256. :func:`load_exported` needs only the two files: no training code objects, nothing
unpickled, and a corrupt or foreign file is refused with an :class:`ArtifactError`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impala_hybrid.deploy.inference import (
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    ArtifactError,
    DeployedPolicy,
    PolicySpec,
    _StatefulRuntimePolicy,
    file_sha256,
    load_policy,
    sidecar_path,
)
from impala_hybrid.models.distributions import beta_concentration, beta_mode
from impala_hybrid.models.zones import dense_copy
from impala_hybrid.threads import torch_threads

if TYPE_CHECKING:
    from impala_hybrid.models.actor_critic import ActorCritic

__all__ = [
    "FORMATS",
    "ONNX_OPSET",
    "DeterministicActor",
    "ExportFormat",
    "TorchScriptPolicy",
    "export_model",
    "load_exported",
]

ExportFormat = Literal["torchscript", "onnx", "npz"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)
ONNX_OPSET = 18
"""Fixed ONNX opset: 18 is the oldest the ``torch.export``-based exporter emits natively (no
version conversion), has ``LayerNormalization``, and every ONNX Runtime since 1.14 runs it."""


class DeterministicActor(nn.Module):
    """``obs [N, obs_dim]`` (+ ``h, c``) -> deterministic env action tensors (see module doc).

    Holds copies of the model's trunk, LSTM and policy layers (exporting never changes the
    model, e.g. its train/eval flags); the value head is dropped.
    """

    action_low: Tensor
    action_high: Tensor

    def __init__(self, model: ActorCritic, discrete_choice: str = "mode") -> None:
        super().__init__()
        model = dense_copy(model)  # a zone-tied network as the dense layers it computes
        # refuses what the artifact cannot reproduce
        self.spec = PolicySpec.from_model(model, discrete_choice)
        self.obs_norm = copy.deepcopy(model.obs_norm)  # statistics frozen from here on
        self.trunk = copy.deepcopy(model.trunk)
        self.lstm = copy.deepcopy(model.lstm)
        self.policy = copy.deepcopy(model.policy)
        self.register_buffer("action_low", model.action_low.detach().clone())
        self.register_buffer("action_high", model.action_high.detach().clone())
        self._slices: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        offset = 0
        for name, shape in self.spec.param_layout():
            size = int(np.prod(shape))
            self._slices[name] = (offset, offset + size, shape)
            offset += size

    @property
    def input_names(self) -> list[str]:
        return self.spec.input_names

    @property
    def output_names(self) -> list[str]:
        return self.spec.output_names

    def _param(self, flat: Tensor, name: str) -> Tensor:
        start, stop, shape = self._slices[name]
        return flat[:, start:stop].reshape(-1, *shape)

    def _chosen(self, flat: Tensor, name: str, k: Tensor | None) -> Tensor:
        """A continuous parameter ``[N, D]``; for the gated head the ``k``-th set's (a
        ``gather``, as ``_gather_component`` in the distributions)."""
        p = self._param(flat, name)
        if self.spec.kind != "hybrid_gated":
            return p
        assert k is not None
        idx = k.reshape(-1, 1, 1).expand(-1, 1, self.spec.action_dim)
        return p.gather(1, idx).squeeze(1)

    def forward(self, obs: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        """``(obs[, gumbel][, h, c])`` in :attr:`input_names` order."""
        noise: Tensor | None = None
        if self.spec.samples_choice:
            noise, rest = rest[0], rest[1:]
        h, c = rest if rest else (None, None)
        x = self.trunk(obs if self.obs_norm is None else self.obs_norm(obs))
        if self.lstm is not None:
            assert h is not None and c is not None, "a recurrent actor needs h and c"
            h, c = self.lstm(x, (h, c))
            x = h
        flat = self.policy(x)
        outs: list[Tensor] = []
        k: Tensor | None = None
        if self.spec.has_discrete:
            logp = F.log_softmax(self._param(flat, "logits"), dim=-1)
            k = (logp if noise is None else logp + noise).argmax(-1)
            outs.append(k)
        if self.spec.has_continuous:
            low, high = self.action_low, self.action_high
            if self.spec.bounded_kind == "squashed_gaussian":
                unit = (torch.tanh(self._chosen(flat, "mean", k)) + 1.0) / 2.0
            else:  # BetaDistribution.mode: the same two functions
                alpha = beta_concentration(self._chosen(flat, "raw_alpha", k))
                beta = beta_concentration(self._chosen(flat, "raw_beta", k))
                unit = beta_mode(alpha, beta)
            outs.append(torch.lerp(low, high, unit).clamp(low, high))
        if self.lstm is not None:
            assert h is not None and c is not None
            outs += [h, c]
        return tuple(outs)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporters' deprecation chatter and progress logs (not errors)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*(torch\.jit|axis name|LeafSpec).*")
            yield
    finally:
        logger.setLevel(level)


def export_model(
    model: ActorCritic,
    path: str | Path,
    format: ExportFormat = "torchscript",
    *,
    opset: int = ONNX_OPSET,
    preference: Sequence[str] | None = None,
    discrete_choice: str = "mode",
) -> Path:
    """Write ``model``'s deterministic policy to ``path`` plus its sidecar; returns ``path``.

    ``preference``: the objective names of a preference-conditioned model
    (``TrainConfig.preference``), whose observation ends with their weights ``w``; the
    sidecar's ``observation`` entry then says so, so that a deployment feeds ``[obs, w]``.
    ``discrete_choice``: ``"mode"`` deploys the most probable discrete choice, ``"sample"``
    draws it from the policy (``TrainConfig.discrete_choice``; the graph then takes Gumbel
    noise as the input ``gumbel``, which every loaded policy feeds from its seeded generator).

    Raises ``ValueError`` for an unknown format and
    :class:`~impala_hybrid.deploy.inference.UnsupportedModelError` for a model the artifact
    could not reproduce (non-float32 weights, a modified trunk, non-JSON action keys).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {FORMATS}")
    model = dense_copy(model)  # a zone-tied network as the dense layers it computes
    actor = DeterministicActor(model, discrete_choice).cpu().eval()  # artifacts run on CPU
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = actor.spec
    gen = torch.Generator().manual_seed(0)
    n = 2  # >= 2 so torch.export does not specialise the batch axis to 1
    example: tuple[Tensor, ...] = (torch.randn(n, spec.obs_dim, generator=gen),)
    if spec.samples_choice:
        example += (torch.zeros(n, spec.num_actions),)
    if spec.recurrent:
        example += (torch.zeros(n, spec.lstm_size), torch.zeros(n, spec.lstm_size))
    artifact: dict[str, Any] = {
        "format": format,
        "file": path.name,
        "inputs": actor.input_names,
        "outputs": actor.output_names,
    }
    if format == "torchscript":
        with _quiet_export(), torch.no_grad():
            traced = torch.jit.trace(actor, example)
            torch.jit.save(traced, str(path))
        artifact["torch_version"] = torch.__version__
    elif format == "onnx":
        batch = torch.export.Dim("batch", min=1)
        with _quiet_export(), torch.no_grad():
            torch.onnx.export(
                actor,
                example,
                str(path),
                input_names=actor.input_names,
                output_names=actor.output_names,
                opset_version=opset,
                # forward(obs, *rest): the shapes nest as its arguments do
                dynamic_shapes=(
                    ({0: batch}, tuple({0: batch} for _ in example[1:]))
                    if len(example) > 1
                    else ({0: batch},)
                ),
                external_data=False,
                dynamo=True,
                verbose=False,
            )
        artifact["opset"] = opset
    else:
        keep = ("obs_norm.", "trunk.", "lstm.", "policy.")
        state = {
            k: v.detach().cpu().numpy() for k, v in model.state_dict().items() if k.startswith(keep)
        }
        with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, **state)
    artifact["sha256"] = file_sha256(path)
    meta: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "artifact": artifact,
        "policy": spec.to_json(),
    }
    if preference:
        k = len(preference)
        meta["observation"] = {
            "dims": spec.obs_dim,
            "preference": {
                "first_index": spec.obs_dim - k,
                "objectives": list(preference),
                "note": f"the last {k} observation entries are the objective weights w "
                "(>= 0, summing to 1) the policy acts for: feed [env observation, w]",
            },
        }
    sidecar_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


class TorchScriptPolicy(_StatefulRuntimePolicy):
    """An exported TorchScript policy, run under ``torch.inference_mode`` on ``threads``
    intra-op threads (default 1) and without the JIT's profiling optimiser.

    Why these settings (measured on the 2-core dev VM, batch 1, ``python -c "while True:
    pass"`` hogging one core): torch's default is one intra-op thread per core, and a small
    matrix product split over two threads waits for whichever core the other process holds:
    ~190 us per 4x256x256 product instead of ~15 us, and 3-60 ms spikes per decision. So each
    call runs on ``threads`` threads and restores the process's setting afterwards (cost
    ~0.2 us). The profiling executor spends the first two calls (2-7 ms each) profiling and
    re-specialises the graph, tens of ms, whenever a new batch size arrives; without it
    (``torch.jit.optimized_execution(False)`` on a frozen module) the first call takes
    ~0.5-1 ms and every later one ~45-60 us, the same as with it. NumPy (``npz``, ~15 us) and
    ONNX Runtime (~20 us) remain the faster deployment formats.
    """

    def __init__(self, path: str | Path, spec: PolicySpec, *, threads: int = 1) -> None:
        super().__init__(spec)
        if threads < 1:
            raise ValueError(f"threads = {threads} is invalid: must be >= 1")
        self.threads = threads
        try:
            with _quiet_export():
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # torch raises RuntimeError / ValueError variants
            raise ArtifactError(f"{path}: torch.jit.load cannot read it: {e}") from e
        with _quiet_export():
            self.module = torch.jit.freeze(module.eval())

    def _run(self, obs: np.ndarray) -> list[np.ndarray]:
        with (
            torch_threads(self.threads),
            torch.inference_mode(),
            torch.jit.optimized_execution(False),
        ):
            args = [torch.from_numpy(obs)]
            if self.spec.samples_choice:
                args.append(torch.from_numpy(self._gumbel(obs.shape[0])))
            if self.spec.recurrent:
                assert self.h is not None and self.c is not None
                args += [torch.from_numpy(self.h), torch.from_numpy(self.c)]
            outs = self.module(*args)
        return [o.numpy() for o in outs]


def load_exported(path: str | Path, *, threads: int = 1, seed: int = 0) -> DeployedPolicy:
    """Load an artifact written by :func:`export_model` as a callable policy with
    :class:`~impala_hybrid.evaluation.policy.TorchPolicy`'s interface (``obs -> env action``,
    ``reset``, ``observe_done``). Same as :func:`impala_hybrid.deploy.inference.load_policy`."""
    return load_policy(path, threads=threads, seed=seed)
