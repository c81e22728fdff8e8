"""Typed training configuration: dataclasses filled from YAML (values only) and ``--set`` overrides.

Every constant the paper names has its paper value as default, with a comment citing it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.buckets import Bucket, parse_buckets
from ..instructions import InstructionConfig
from .config_check import _describe, _type_ok
from .stages import Stage, parse_stages
from .trainable import LoraSettings, check_mode


def _default_unet() -> dict:
    return dict(
        block_out_channels=[64, 128, 128],
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        layers_per_block=1,
        attention_head_dim=4,
        norm_num_groups=32,
    )


def _default_buckets() -> list[Bucket]:
    # paper, sec. 4.1: 16-frame clips at 256x256
    return [Bucket("square", height=256, width=256, frames=16, batch_size=1)]


@dataclass
class ModelConfig:
    # "scratch": a new UNet from `unet`; "stable-diffusion": inflate the UNet of the Stable
    # Diffusion folder `pretrained` and use its VAE and CLIP text encoder; "pipeline" (or
    # "pixeldance"): start from the pixeldance pipeline folder `pretrained` (fine-tuning).
    init: str = "scratch"
    pretrained: str | None = None
    # PixelDanceUNet arguments (scratch); when continuing (init "pixeldance") only
    # `frame_embedding: true` is read: it adds a frame embedding the model lacks, and
    # `c_image_layout: mask`: it adds the keyframe mark channels (keyframes.py), zero weights
    unet: dict = field(default_factory=_default_unet)
    # "codec": lossless space-to-depth with `codec_patch_size`; or a folder/hub id holding an
    # AutoencoderKL (with `vae_subfolder`). Ignored for the pretrained inits.
    vae: str = "codec"
    vae_subfolder: str | None = None
    codec_patch_size: int = 4
    # the codec's latents are pixels in [-1, 1] (std about 0.33 on Dancing Shapes); the
    # scaling factor brings them to unit variance, as Stable Diffusion's VAE factor does, so
    # the noise schedule means what it was designed to mean
    codec_scaling_factor: float = 1.0
    # text encoder folder or hub id; None: the offline default (all-MiniLM-L6-v2)
    text_encoder: str | None = None
    max_text_tokens: int = 77
    # the paper predicts epsilon (sec. 3.2); "v_prediction" and "sample" (x0) are the others
    prediction_type: str = "epsilon"
    snr_gamma: float | None = None  # min-SNR-gamma loss weighting; None disables
    # not in the paper: weight the loss up to 1 + this where a frame has changed since frame 0
    # (diffusion.motion_weights), so a small model spends its capacity on the motion; 0 disables
    motion_loss_weight: float = 0.0


@dataclass
class DataConfig:
    manifest: str | None = None  # CSV/JSONL of videos (or WebVid columns)
    shards: str | None = None  # webdataset tar shards (brace patterns, URLs)
    latent_cache: str | None = None  # folder written by `pixeldance preprocess`
    images: str | None = None  # CSV/JSONL or folder of captioned images
    fps: float = 4.0  # paper, sec. 4.1: frames sampled at 4 fps
    image_every: int = 8  # paper, sec. 4.1: an image batch every 8th iteration (0: never)
    image_batch_size: int = 4
    # each `{name, height, width, frames, batch_size}`, parsed once here
    buckets: list[Bucket] = field(default_factory=_default_buckets)
    # progressive training (not in the paper): earlier, cheaper stages that run before the main
    # one, each `{steps, buckets, image_every (optional), name (optional)}`; the main stage (the
    # `buckets` above, the size generation uses) takes the steps left to optim.max_steps
    stages: list[Stage] = field(default_factory=list)
    num_workers: int = 0
    max_retries: int = 3
    decode_timeout: float = 30.0

    def __post_init__(self):
        self.buckets = parse_buckets(self.buckets, "data.buckets")
        self.stages = parse_stages(self.stages)


@dataclass
class OptimConfig:
    max_steps: int = 1000
    lr: float = 1e-4
    warmup_steps: int = 100
    lr_schedule: str = "constant_with_warmup"  # any diffusers.optimization schedule name
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    grad_accum: int = 1
    # autocast dtype over fp32 master weights: "no" | "bf16" | "fp16" (GPU; not with fsdp).
    # A bare `no` in YAML or --set reads as false and is accepted as "no".
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    ema_decay: float = 0.999  # 0 disables EMA
    # shard the UNet over the processes with torch's fully_shard (FSDP2) instead of DDP
    # replicas; launch with torchrun or `accelerate launch --multi_gpu` (TRAINING.md)
    fsdp: bool = False
    # what trains: "all" | "temporal" (the temporal layers, 2D layers frozen) | "lora"
    # (adapters from `lora`); see pixeldance.train.trainable
    trainable: str = "all"
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self):
        self.mixed_precision = mixed_precision_mode(self.mixed_precision)
        check_mode(self.trainable)


MIXED_PRECISION_MODES = ("no", "fp16", "bf16")


def mixed_precision_mode(value) -> str:
    """``"no"``, ``"fp16"`` or ``"bf16"`` from a config value; YAML's false (a bare ``no``) and
    null mean ``"no"``."""
    if value is False or value is None:
        return "no"
    if isinstance(value, str) and value.strip().lower() in MIXED_PRECISION_MODES:
        return value.strip().lower()
    raise ValueError(
        f"optim.mixed_precision must be one of {', '.join(MIXED_PRECISION_MODES)}; got {value!r}"
    )


@dataclass
class RunConfig:
    output_dir: str = "runs/pixeldance"
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    sample_every: int = 0  # write a sample video every N steps (0: never)
    sample_prompt: str = "a red circle moves to the right"
    sample_steps: int = 20
    max_nonfinite: int = 5  # this many non-finite losses in a row stop the run
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])
    log_batches: bool = False  # write what each process trained on to batches-rank{r}.jsonl


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    instructions: InstructionConfig = field(default_factory=InstructionConfig)

    def to_dict(self) -> dict:
        """Plain values, the shape a YAML config has (buckets and stages as mappings)."""
        values = dataclasses.asdict(self)
        values["data"]["stages"] = [s.to_dict() for s in self.data.stages]
        return values


# keys that a run's saved config.yaml from an earlier version holds but that configure nothing
# now: such a file still loads when they hold the value every run wrote
_RETIRED = {"run.inject_nan_steps": []}  # a testing aid; the tests inject NaN losses themselves


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    for key in [k for k in values if f"{where}.{k}".strip(".") in _RETIRED]:
        name = f"{where}.{key}".strip(".")
        if values[key] != _RETIRED[name]:
            raise ValueError(f"{name} is no longer a setting; remove it from the config")
        values = {k: v for k, v in values.items() if k != key}
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(
            f"unknown config keys in {where or 'top level'}: {sorted(unknown)}; known: {sorted(known)}"
        )
    kwargs = {}
    for name, value in values.items():
        f = known[name]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            kwargs[name] = _build(sub, value, f"{where}.{name}".strip("."))
        else:
            key = f"{where}.{name}".strip(".")
            kwargs[name] = _coerce(str(f.type), value, key)
            lenient = key == "optim.mixed_precision"  # YAML's bare `no` reads as false
            if not lenient and not _type_ok(str(f.type), kwargs[name]):
                raise ValueError(f"{key} must be {_describe(str(f.type))}, got {value!r}")
    try:
        return cls(**kwargs)
    except ValueError as err:  # a section's own check: named with its section
        message = str(err)
        raise ValueError(message if message.startswith(where) else f"{where}.{message}") from err


def _coerce(kind: str, value, where: str):
    """Numbers written in ways YAML reads as strings (``3e-4``) become the field's type."""
    if isinstance(value, str) and value.strip().lower() not in ("none", "null", ""):
        for name, cast in (("float", float), ("int", int)):
            if kind.split(" |")[0] == name:
                try:
                    return cast(value)
                except ValueError as err:
                    raise ValueError(f"{where} must be a {name}, got {value!r}") from err
    if kind.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def config_from_dict(values: dict) -> Config:
    return _build(Config, values or {}, "")


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set takes key=value, got {item!r}")
        key, raw = item.split("=", 1)
        node = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: {part} is not a section")
        if not all(parts):
            raise ValueError(f"--set {item}: {key!r} is not a config key (section.name)")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ValueError(
                f"--set {item}: the value is not valid YAML ({_problem(err)})"
            ) from err
    return values


def _problem(err: yaml.YAMLError) -> str:
    """A YAML error as a few words (without the excerpt PyYAML adds)."""
    return str(getattr(err, "problem", None) or err).split("\n")[0]


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """A YAML file's value; a file that is not UTF-8 or not YAML is one ``ValueError`` naming
    the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {err.start})") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ValueError(f"{what} {where}: not valid YAML ({_problem(err)})") from err


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        values = read_yaml(path) or {}
        if not isinstance(values, dict):
            raise ValueError(f"config {path} must hold sections (model, data, optim, run, ...)")
    return config_from_dict(apply_overrides(values, overrides or []))


def save_config(config: Config, path: str | Path) -> None:
    from ..files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
