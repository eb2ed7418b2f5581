"""Architecture configurations of the two networks as frozen dataclasses, and the named presets.

A configuration fully describes a network's shape: a pruned network is just
another configuration (fewer heads, a narrower MLP in some blocks, narrower residual conv blocks) with its
weights. Presets (``tiny``, ``small``, ``base``, ``paper``) are named, never
copied (STYLE.md lesson 6).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Mapping

from fuxiops.errors import ConfigError, FuxiopsError
from fuxiops.grids import Grid


@dataclass(frozen=True)
class ForecasterArch:
    """FuXi-style Swin U-Transformer.

    Shapes: cube embedding ``patch = (time, lat, lon)`` (kernel = stride) to
    ``embed_dim`` channels; down block (3x3 stride-2 conv + residual
    GroupNorm/SiLU block) to ``dim``; ``len(heads)`` Swin-V2 blocks (block ``i``
    has ``heads[i]`` heads of ``head_dim`` and an MLP of ``mlp_hidden[i]``);
    up block (2x2 stride-2 transposed conv + residual block) back to
    ``embed_dim``, concatenated with the embedding (skip) and a linear head to
    the output channels per patch pixel. ``res_hidden`` optionally gives the
    inner width of the down and up residual blocks (pruned conv channel groups);
    empty means the block's own width, as in FuXi.
    """

    embed_dim: int
    dim: int
    heads: tuple[int, ...]
    mlp_hidden: tuple[int, ...]
    head_dim: int = 32
    patch: tuple[int, int, int] = (2, 4, 4)
    window: tuple[int, int] = (8, 8)
    #: GroupNorm groups in the conv blocks (must divide embed_dim and dim).
    groups: int = 8
    #: Hidden width of the continuous relative-position-bias MLP (Swin V2: 512).
    cpb_hidden: int = 256
    #: How the grid's rows are made a multiple of what the windows need:
    #: ``interp`` resamples rows (721 -> 720 at 0.25 deg, as FuXi) and interpolates the
    #: increment back; ``pad`` extends across the poles (rows mirrored with a 180 degree
    #: longitude shift) and crops.
    lat_mode: Literal["interp", "pad"] = "interp"
    #: Predict the state as x_t + tendency (normalised by the residual std).
    residual: bool = True
    #: Inner widths ``(down, up)`` of the residual conv blocks, multiples of their GroupNorm group size
    #: (``dim // groups``, ``embed_dim // groups``); ``()`` = full width (``dim``, ``embed_dim``).
    res_hidden: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.heads) != len(self.mlp_hidden):
            raise ConfigError(f"heads ({len(self.heads)} blocks) and mlp_hidden ({len(self.mlp_hidden)} blocks) "
                              "must list one entry per Swin block")
        if any(h < 1 for h in self.heads) or any(m < 1 for m in self.mlp_hidden):
            raise ConfigError("every Swin block needs at least one head and one MLP unit")
        if self.embed_dim % self.groups or self.dim % self.groups:
            raise ConfigError(f"groups={self.groups} must divide embed_dim={self.embed_dim} and dim={self.dim}")
        if self.res_hidden:
            if len(self.res_hidden) != 2:
                raise ConfigError(f"res_hidden must give (down, up) inner widths, got {self.res_hidden}")
            for what, h, c in (("down", self.res_hidden[0], self.dim), ("up", self.res_hidden[1], self.embed_dim)):
                g = c // self.groups
                if h < g or h % g or h > c:
                    raise ConfigError(f"res_hidden {what}={h} must be a multiple of the group size {c}/{self.groups}"
                                      f" = {g}, between {g} and {c}")

    @property
    def down_hidden(self) -> int:
        """Inner width of the down block's residual convolution."""
        return self.res_hidden[0] if self.res_hidden else self.dim

    @property
    def up_hidden(self) -> int:
        return self.res_hidden[1] if self.res_hidden else self.embed_dim

    @property
    def depth(self) -> int:
        return len(self.heads)

    @property
    def lat_multiple(self) -> int:
        """Rows must be a multiple of this at the network's input."""
        return self.patch[1] * 2 * self.window[0]

    @property
    def lon_multiple(self) -> int:
        return self.patch[2] * 2 * self.window[1]

    def rows_for(self, n_lat: int) -> int:
        """Rows the network works on for a grid with ``n_lat`` rows."""
        m = self.lat_multiple
        if self.lat_mode == "pad":
            return -(-n_lat // m) * m
        return max(m, int(round(n_lat / m)) * m)

    def check_grid(self, grid: Grid) -> None:
        if grid.n_lon % self.lon_multiple:
            raise ConfigError(f"grid {grid.name!r} has {grid.n_lon} longitudes, not a multiple of "
                              f"patch {self.patch[2]} x 2 (down block) x window {self.window[1]} = "
                              f"{self.lon_multiple}; choose another preset/window for this grid")
        rows = self.rows_for(grid.n_lat)
        if rows // self.lat_multiple < 1:
            raise ConfigError(f"grid {grid.name!r} is too small for window {self.window}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.res_hidden:  # unpruned conv blocks: the same dict as before the field existed
            del d["res_hidden"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ForecasterArch":
        d = dict(d)
        for k in ("heads", "mlp_hidden", "patch", "window", "res_hidden"):
            if k in d:
                d[k] = tuple(int(x) for x in d[k])
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"forecaster architecture: {e}") from None


@dataclass(frozen=True)
class AssimilatorArch:
    """Multi-branch convolutional U-Net (FuXi-DA style).

    Each branch (background, every observation group, static/clock conditions)
    has its own encoder: a 3x3 stem then down blocks (2x2 stride-2 conv,
    LayerNorm, SiLU, 3x3 conv) giving ``len(widths)`` scales. At every scale
    the features are fused (background + presence-gated sum of observation
    features + conditions, 1x1 conv); the decoder (up blocks: 3x3 conv,
    LayerNorm, SiLU, 3x3 conv, pixel shuffle x2) with skips gives the increment.
    """

    widths: tuple[int, ...] = (32, 64, 128)
    obs_widths: tuple[int, ...] = (16, 32, 64)
    cond_widths: tuple[int, ...] = (8, 16, 32)
    #: Length scale (km) of the successive-correction term on the innovations (0: none; the network's
    #: increment alone, as in checkpoints from before the term existed).
    spread_km: float = 0.0

    def __post_init__(self) -> None:
        if not (len(self.widths) == len(self.obs_widths) == len(self.cond_widths)) or len(self.widths) < 1:
            raise ConfigError("widths, obs_widths and cond_widths must give one width per scale")
        if not (0.0 <= self.spread_km <= 5000.0):
            raise ConfigError(f"spread_km must be in [0, 5000] km, got {self.spread_km}")

    @property
    def scales(self) -> int:
        return len(self.widths)

    @property
    def multiple(self) -> int:
        return 2 ** (self.scales - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AssimilatorArch":
        try:
            return cls(**{k: float(v) if k == "spread_km" else tuple(int(x) for x in v) for k, v in d.items()})
        except TypeError as e:
            raise ConfigError(f"assimilator architecture: {e}") from None


@dataclass(frozen=True)
class Preset:
    """A named pair of architectures."""

    name: str
    forecaster: ForecasterArch
    assimilator: AssimilatorArch
    description: str = ""
    meta: dict[str, str] = field(default_factory=dict, compare=False)


def _uniform(depth: int, heads: int, mlp: int) -> dict[str, tuple[int, ...]]:
    return {"heads": (heads,) * depth, "mlp_hidden": (mlp,) * depth}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("tiny",
               ForecasterArch(embed_dim=16, dim=32, head_dim=8, patch=(2, 2, 2), window=(2, 4), groups=4,
                              cpb_hidden=16, **_uniform(2, 2, 64)),
               AssimilatorArch(widths=(8, 16), obs_widths=(4, 8), cond_widths=(4, 4)),
               "unit tests: any grid whose longitudes are a multiple of 16"),
        Preset("small",
               ForecasterArch(embed_dim=96, dim=192, head_dim=32, patch=(2, 2, 2), window=(4, 8), groups=8,
                              cpb_hidden=128, **_uniform(8, 6, 384)),
               AssimilatorArch(widths=(48, 96, 192), obs_widths=(16, 32, 64), cond_widths=(8, 16, 32)),
               "testbed default (2.8125 deg); any grid with longitudes a multiple of 32"),
        Preset("base",
               ForecasterArch(embed_dim=256, dim=512, head_dim=64, patch=(2, 4, 4), window=(9, 9), groups=16,
                              cpb_hidden=256, **_uniform(16, 8, 2048)),
               AssimilatorArch(widths=(64, 128, 256, 512), obs_widths=(32, 64, 128, 256),
                               cond_widths=(16, 32, 64, 128)),
               "0.25 / 0.5 / 1.0 deg; longitudes a multiple of 72"),
        Preset("paper",
               ForecasterArch(embed_dim=1536, dim=1536, head_dim=64, patch=(2, 4, 4), window=(9, 9), groups=32,
                              cpb_hidden=512, **_uniform(48, 24, 6144)),
               AssimilatorArch(widths=(128, 256, 512, 1024), obs_widths=(64, 128, 256, 512),
                               cond_widths=(32, 64, 128, 256)),
               "FuXi size: C = 1536, 48 Swin-V2 blocks, C x 180 x 360 embedding at 0.25 deg"),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise FuxiopsError(f"unknown model preset {name!r}; allowed: {', '.join(PRESETS)}") from None


def with_blocks(arch: ForecasterArch, heads: tuple[int, ...], mlp_hidden: tuple[int, ...],
                res_hidden: tuple[int, ...] | None = None) -> ForecasterArch:
    """The same architecture with other per-block heads / MLP widths and, if given, residual conv block
    inner widths ``(down, up)`` (e.g. after pruning; full widths are stored as ``()``)."""
    arch = replace(arch, heads=tuple(heads), mlp_hidden=tuple(mlp_hidden))
    if res_hidden is not None:
        rh = tuple(int(h) for h in res_hidden)
        arch = replace(arch, res_hidden=() if rh == (arch.dim, arch.embed_dim) else rh)
    return arch
