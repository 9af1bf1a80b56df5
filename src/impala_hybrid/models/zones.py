"""Zone-tied layers: an MLP whose weights are shared across interchangeable parts of the input.

Why: on the UAV network the four zones are alike up to their arrival rates, and the rule a good
policy needs ("pull the emergencies of the zone whose queue is hottest", "serve a zone faster
when its queue is high") is one rule applied per zone. A plain MLP learns it four times, from
four separate sets of samples, and the runs that failed wrote one zone off (docs/results.md,
"What stands in the way: the beam"). Here every layer is the permutation-equivariant linear map
of Deep Sets (Zaheer et al., NeurIPS 2017, eq. 4; Hartford et al., ICML 2018) extended with a
zone-free ("global") part:

    h'_k = A h_k + B mean_j(h_j) + D g + b_z (+ delta_k in the first layer)
    g'   = C mean_j(h_j) + E g + b_g

for zone blocks ``h_k`` and the global block ``g``. Zone k's outputs (its transfer logit, its
service intensity and that one's log-std) read zone k's block, so "which zone" is decided by a
softmax over one shared scoring rule. ``delta_k`` (a per-zone bias, zero at the start) lets the
zones differ (their rates do), so the map is equivariant only up to it.

Nothing here is a new kind of network: each layer is a dense ``Linear`` / ``LayerNorm`` whose
weight matrix is assembled from the tied blocks (``weight()``), so :func:`dense_copy` turns a
tied model into the stock MLP with the same outputs, and export, the NumPy inference path and
every artifact format work unchanged. No library provides this layer with a global part and
arbitrary index layouts (``torch.nn.utils.parametrize`` could assemble the matrix, but its
state-dict keys and caching get in the way of the actors' hot path); it is ~150 lines.

Shapes: a layout lists where each canonical position lives in the layer's actual vector; the
canonical order is zone 0's ``per_zone`` entries, ..., zone ``Z-1``'s, then ``shared`` global
entries.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impala_hybrid.validation import ConfigError

if TYPE_CHECKING:
    from impala_hybrid.models.actor_critic import ActorCritic


@dataclasses.dataclass(frozen=True)
class ZoneStructure:
    """Which observation entries and which action components belong to which zone.

    ``obs_zone[k]``: zone k's observation indices (the same count for every zone, listed in the
    same feature order); ``obs_shared``: the zone-free ones. ``discrete_zone[k]``: the discrete
    choice that acts on zone k (or ``()`` for none); ``continuous_zone[k]``: the continuous
    dimension zone k owns (or ``()``). Everything not listed is global.
    """

    obs_zone: tuple[tuple[int, ...], ...]
    obs_shared: tuple[int, ...]
    discrete_zone: tuple[int, ...] = ()
    continuous_zone: tuple[int, ...] = ()

    @property
    def zones(self) -> int:
        return len(self.obs_zone)

    def __post_init__(self) -> None:
        sizes = {len(z) for z in self.obs_zone}
        if self.zones < 2 or len(sizes) != 1:
            raise ConfigError(
                f"ZoneStructure.obs_zone = {self.obs_zone!r} is invalid: needs >= 2 zones with "
                "the same number of observation entries each"
            )
        flat = [i for z in self.obs_zone for i in z] + list(self.obs_shared)
        if sorted(flat) != list(range(len(flat))):
            raise ConfigError(
                "ZoneStructure: obs_zone and obs_shared must list every observation index "
                f"0..{len(flat) - 1} exactly once"
            )
        for name in ("discrete_zone", "continuous_zone"):
            got = getattr(self, name)
            if got and (len(got) != self.zones or len(set(got)) != len(got)):
                raise ConfigError(
                    f"ZoneStructure.{name} = {got!r} is invalid: one distinct index per zone "
                    f"({self.zones}) or empty"
                )


class Layout(NamedTuple):
    """A vector of ``zones * per_zone + shared`` entries; ``positions[r]``: where canonical
    entry r lives in the actual vector (see module docstring)."""

    zones: int
    per_zone: int
    shared: int
    positions: tuple[int, ...]

    @classmethod
    def blocks(cls, zones: int, per_zone: int, shared: int) -> Layout:
        """Canonical order is the actual order (hidden layers)."""
        return cls(zones, per_zone, shared, tuple(range(zones * per_zone + shared)))

    @property
    def size(self) -> int:
        return self.zones * self.per_zone + self.shared

    def inverse(self) -> list[int] | None:
        """``inv[actual] = canonical``; ``None`` when the order is already canonical."""
        if list(self.positions) == list(range(self.size)):
            return None
        inv = [0] * self.size
        for r, a in enumerate(self.positions):
            inv[a] = r
        return inv


def obs_layout(structure: ZoneStructure) -> Layout:
    index = tuple(i for z in structure.obs_zone for i in z) + structure.obs_shared
    return Layout(structure.zones, len(structure.obs_zone[0]), len(structure.obs_shared), index)


def head_layout(
    structure: ZoneStructure, sizes: Sequence[tuple[str, int]], discrete: Sequence[str]
) -> Layout:
    """Layout of a policy head's flat output: the concatenation of ``sizes`` (name, size); a
    parameter named in ``discrete`` is indexed by the discrete choice, the others by the
    continuous dimension. Zone k owns its choice's / dimension's entry of every parameter."""
    zones = structure.zones
    per_zone: list[list[int]] = [[] for _ in range(zones)]
    owned: set[int] = set()
    offset = 0
    for name, size in sizes:
        own = structure.discrete_zone if name in discrete else structure.continuous_zone
        if own and max(own) >= size:
            raise ConfigError(
                f"ZoneStructure: zone index {max(own)} is outside head parameter {name!r} "
                f"of size {size}"
            )
        for k, i in enumerate(own):
            per_zone[k].append(offset + i)
            owned.add(offset + i)
        offset += size
    shared = tuple(i for i in range(offset) if i not in owned)
    index = tuple(i for z in per_zone for i in z) + shared
    return Layout(zones, len(per_zone[0]), len(shared), index)


def _assemble(zz_a: Tensor, zz_b: Tensor, zg: Tensor, gz: Tensor, gg: Tensor, zones: int) -> Tensor:
    """Canonical ``[Z po + go, Z pi + gi]`` matrix from the tied blocks (module docstring)."""
    eye = torch.eye(zones, dtype=zz_a.dtype, device=zz_a.device)
    mean = torch.full((zones, zones), 1.0 / zones, dtype=zz_a.dtype, device=zz_a.device)
    zz = torch.kron(eye, zz_a) + torch.kron(mean, zz_b)
    top = torch.cat([zz, zg.repeat(zones, 1)], dim=1)
    bottom = torch.cat([(gz / zones).repeat(1, zones), gg], dim=1)
    return torch.cat([top, bottom], dim=0)


class _Cached(nn.Module):
    """Caches the assembled tensors while no gradient is needed (actors, evaluation): they
    change only when a parameter is written, which bumps its version counter."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple[tuple[int, ...], tuple[Tensor, ...]] | None = None

    def _build(self) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def tensors(self) -> tuple[Tensor, ...]:
        if torch.is_grad_enabled():
            return self._build()
        key = tuple(v for p in self.parameters() for v in (p._version, p.data_ptr()))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, tuple(t.detach() for t in self._build()))
        return self._cache[1]

    def __deepcopy__(self, memo: dict[int, object]) -> _Cached:
        cls = self.__class__
        new = cls.__new__(cls)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            setattr(new, k, None if k == "_cache" else copy.deepcopy(v, memo))
        return new


class TiedLinear(_Cached):
    """``y = W x + b`` with ``W``, ``b`` assembled from zone-tied blocks (module docstring)."""

    def __init__(self, inp: Layout, out: Layout, gain: float, zone_bias: bool = False) -> None:
        super().__init__()
        if inp.zones != out.zones:
            raise ValueError(f"zone counts differ: {inp.zones} in, {out.zones} out")
        self.inp, self.out = inp, out
        self.in_features, self.out_features = inp.size, out.size
        z, pi, po = inp.zones, inp.per_zone, out.per_zone
        # Initialised from one orthogonal matrix of the full size, as a dense layer would be:
        # the own-zone block and the global blocks keep its entries' scale; cross-zone starts 0.
        full = torch.empty(out.size, inp.size)
        nn.init.orthogonal_(full, gain)
        self.own = nn.Parameter(full[:po, :pi].clone())  # A
        self.pooled = nn.Parameter(torch.zeros(po, pi))  # B
        self.from_global = nn.Parameter(full[:po, z * pi :].clone())  # D
        self.to_global = nn.Parameter(full[z * po :, :pi].clone() * z)  # C
        self.global_ = nn.Parameter(full[z * po :, z * pi :].clone())  # E
        self.bias_zone = nn.Parameter(torch.zeros(po))
        self.bias_global = nn.Parameter(torch.zeros(out.shared))
        self.zone_delta = nn.Parameter(torch.zeros(z, po)) if zone_bias else None
        self._inv_out, self._inv_in = out.inverse(), inp.inverse()

    def _build(self) -> tuple[Tensor, Tensor]:
        z = self.out.zones
        w = _assemble(self.own, self.pooled, self.from_global, self.to_global, self.global_, z)
        bz = self.bias_zone.repeat(z)
        if self.zone_delta is not None:
            bz = bz + self.zone_delta.reshape(-1)
        b = torch.cat([bz, self.bias_global])
        if self._inv_out is not None:
            w, b = w[self._inv_out], b[self._inv_out]
        if self._inv_in is not None:
            w = w[:, self._inv_in]
        return w, b

    @property
    def weight(self) -> Tensor:
        return self.tensors()[0]

    @property
    def bias(self) -> Tensor:
        return self.tensors()[1]

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.tensors()
        return F.linear(x, w, b)

    @torch.no_grad()
    def fill_bias(self, positions: Sequence[int], value: float) -> None:
        """Set the bias of the actual output ``positions`` to ``value`` (through the tied
        parameters, so every zone's copy of a position gets it)."""
        inv = self.out.inverse() or list(range(self.out.size))
        zp = self.out.zones * self.out.per_zone
        for p in positions:
            r = inv[p]
            if r < zp:
                self.bias_zone[r % self.out.per_zone] = value
            else:
                self.bias_global[r - zp] = value

    def dense(self) -> nn.Linear:
        w, b = (t.detach().clone() for t in self._build())
        layer = nn.Linear(self.in_features, self.out_features)
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)
        return layer


class TiedLayerNorm(_Cached):
    """LayerNorm over the whole vector (its statistics are the same under a permutation of the
    zones) with the affine scale and shift tied across zones."""

    def __init__(self, layout: Layout, eps: float = 1e-5) -> None:
        super().__init__()
        self.layout, self.eps = layout, eps
        self.normalized_shape = (layout.size,)
        self.weight_zone = nn.Parameter(torch.ones(layout.per_zone))
        self.weight_global = nn.Parameter(torch.ones(layout.shared))
        self.bias_zone = nn.Parameter(torch.zeros(layout.per_zone))
        self.bias_global = nn.Parameter(torch.zeros(layout.shared))
        self._inv = layout.inverse()

    def _build(self) -> tuple[Tensor, Tensor]:
        z = self.layout.zones
        w = torch.cat([self.weight_zone.repeat(z), self.weight_global])
        b = torch.cat([self.bias_zone.repeat(z), self.bias_global])
        if self._inv is not None:
            w, b = w[self._inv], b[self._inv]
        return w, b

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.tensors()
        return F.layer_norm(x, self.normalized_shape, w, b, self.eps)

    def dense(self) -> nn.LayerNorm:
        w, b = (t.detach().clone() for t in self._build())
        layer = nn.LayerNorm(self.layout.size, eps=self.eps)
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)
        return layer


def hidden_layout(width: int, zones: int, zone_width: int, field: str) -> Layout:
    shared = width - zones * zone_width
    if shared < 1:
        raise ConfigError(
            f"{field} = {width} is invalid with model.structure = 'zones': it must exceed "
            f"zones x model.zone_width = {zones} x {zone_width} = {zones * zone_width}"
        )
    return Layout.blocks(zones, zone_width, shared)


def dense_copy(model: ActorCritic) -> ActorCritic:
    """``model`` with every tied layer replaced by the dense layer it computes, and its config
    saying ``structure = 'mlp'``: the stock network with the same outputs (for export)."""
    if model.config.structure == "mlp":
        return model
    new = copy.deepcopy(model)

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, TiedLinear | TiedLayerNorm):
                setattr(parent, name, child.dense())
            else:
                swap(child)

    swap(new)
    new.config = dataclasses.replace(model.config, structure="mlp")
    return new
