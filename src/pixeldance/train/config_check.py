"""The one check of a training config before any work: every key's type and range, the
cross-field rules, the bucket sizes against the model's down-sampling and the buckets' frames
against the clips. A problem is a :class:`ConfigError` (a ``ValueError``) naming the key.

``pixeldance train``, ``preprocess`` and ``export --config`` call :func:`check_config` right
after loading, before a model is built or a file written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from ..data.buckets import Bucket
from .pretrained import PIPELINE_INITS


class ConfigError(ValueError):
    """A training config value that cannot run, named by its key."""


# the training schedule's T (paper, sec. 3.2: DDPM with 1000 steps)
NUM_TRAIN_TIMESTEPS = 1000
# what generation accepts (generation.resolve): the main bucket becomes the model's defaults
MAX_FRAMES, MIN_FPS, MAX_FPS = 256, 0.1, 120.0
MAX_SEED = 2**64 - 1
INITS = ("scratch", "stable-diffusion", *PIPELINE_INITS)  # PIPELINE_INITS: "pipeline", "pixeldance"
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TRACKERS = ("tensorboard", "wandb", "comet_ml", "aim", "mlflow", "clearml", "dvclive")
PROBE_CLIPS = 32  # clips probed for their length before a run


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _type_ok(kind: str, value) -> bool:
    """Whether ``value`` fits a dataclass field's annotation (as the string it is)."""
    options = [k.strip() for k in kind.split("|")]
    if value is None:
        return "None" in options
    for option in options:
        base = option.split("[")[0]
        if base == "int" and _integer(value):
            return True
        if base == "float" and _number(value):
            return True
        if base == "str" and isinstance(value, str):
            return True
        if base == "bool" and isinstance(value, bool):
            return True
        if base == "dict" and isinstance(value, dict):
            return True
        if option == "list[str]":
            return isinstance(value, list) and all(isinstance(x, str) for x in value)
        if base == "list" and isinstance(value, list):
            return True
    return False


_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "dict": "a mapping",
}


def _describe(kind: str) -> str:
    options = [k.strip() for k in kind.split("|")]
    lists = {"list[str]": "a list of strings", "list[Bucket]": "a list of buckets"}
    lists["list[Stage]"] = "a list of stages"
    words = [_NAMES.get(o, lists.get(o, o)) for o in options]
    return " or ".join("null" if w == "None" else w for w in words)


def check_types(cfg) -> None:
    """Every key holds a value of its field's type (numbers finite), in nested sections too
    (``optim.lora.rank``)."""
    for section in dataclasses.fields(cfg):
        _check_fields(getattr(cfg, section.name), section.name)


def _check_fields(obj, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            _check_fields(value, key)
        elif not _type_ok(str(f.type), value):
            raise ConfigError(f"{key} must be {_describe(str(f.type))}, got {value!r}")


def _rule(key: str, ok: bool, wanted: str, value) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {wanted}, got {value!r}")


def _ranges() -> list[tuple[str, Callable[[object], bool], str]]:
    """(key, test, what it must be) for every key with a range."""
    at_least = lambda n: (lambda v: v >= n, f"at least {n}")  # noqa: E731
    positive = (lambda v: v > 0, "greater than 0")
    unit = (lambda v: 0 <= v <= 1, "from 0 to 1")
    below_one = (lambda v: 0 <= v < 1, "at least 0 and below 1")
    never = lambda what: (lambda v: v >= 0, f"at least 1 ({what}), or 0 for never")  # noqa: E731
    rules = {
        "model.init": (lambda v: v in INITS, f"one of {', '.join(INITS)}"),
        "model.vae": (lambda v: bool(v), "codec or a folder holding an autoencoder"),
        "model.codec_patch_size": at_least(1),
        "model.codec_scaling_factor": positive,
        "model.max_text_tokens": at_least(0),
        "model.prediction_type": (
            lambda v: v in PREDICTION_TYPES,
            f"one of {', '.join(PREDICTION_TYPES)}",
        ),
        "model.snr_gamma": (lambda v: v is None or v > 0, "greater than 0, or null to disable"),
        "model.motion_loss_weight": (lambda v: v >= 0, "at least 0 (0 disables it)"),
        "data.fps": (lambda v: MIN_FPS <= v <= MAX_FPS, f"from {MIN_FPS} to {MAX_FPS}"),
        "data.image_every": never("an image batch every N steps"),
        "data.image_batch_size": at_least(1),
        "data.num_workers": at_least(0),
        "data.max_retries": at_least(0),
        "data.decode_timeout": positive,
        "optim.max_steps": at_least(1),
        "optim.lr": positive,
        "optim.warmup_steps": at_least(0),
        "optim.weight_decay": at_least(0),
        "optim.adam_beta1": below_one,
        "optim.adam_beta2": below_one,
        "optim.adam_eps": positive,
        "optim.grad_clip": (lambda v: v >= 0, "at least 0 (0: no clipping)"),
        "optim.grad_accum": at_least(1),
        "optim.ema_decay": (lambda v: 0 <= v < 1, "at least 0 and below 1 (0 disables EMA)"),
        "run.output_dir": (lambda v: bool(v.strip()), "a folder name"),
        "run.seed": (lambda v: 0 <= v <= MAX_SEED, "from 0 to 2**64 - 1"),
        "run.checkpoint_every": never("a checkpoint every N steps"),
        "run.keep_checkpoints": (lambda v: v >= 0, "at least 1, or 0 to keep them all"),
        "run.log_every": never("a log line every N steps"),
        "run.sample_every": never("a sample video every N steps"),
        "run.sample_steps": (lambda v: 1 <= v <= NUM_TRAIN_TIMESTEPS, "from 1 to 1000"),
        "run.max_nonfinite": at_least(1),
        "run.trackers": (
            lambda v: all(t in TRACKERS for t in v),
            f"a list of trackers from {', '.join(TRACKERS)}",
        ),
        "instructions.last_frame_candidates": at_least(1),
        "instructions.noise_timestep": (
            lambda v: 0 <= v < NUM_TRAIN_TIMESTEPS,
            f"from 0 to {NUM_TRAIN_TIMESTEPS - 1} (a diffusion step)",
        ),
        "instructions.last_frame_drop_prob": unit,
        "instructions.text_drop_prob": unit,
        "instructions.first_frame_drop_prob": unit,
    }
    return [(key, test, wanted) for key, (test, wanted) in rules.items()]


def _value(cfg, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def check_ranges(cfg) -> None:
    for key, test, wanted in _ranges():
        value = _value(cfg, key)
        _rule(key, test(value), wanted, value)
    from diffusers.optimization import SchedulerType

    schedules = [s.value for s in SchedulerType]
    o = cfg.optim
    _rule("optim.lr_schedule", o.lr_schedule in schedules, f"one of {', '.join(schedules)}",
          o.lr_schedule)  # fmt: skip
    m = cfg.model
    if m.init != "scratch" and not m.pretrained:
        raise ConfigError(f"model.init={m.init} needs model.pretrained (a local folder)")
    for key, b in _all_buckets(cfg):
        _rule(f"{key}.frames", b.frames <= MAX_FRAMES, f"from 1 to {MAX_FRAMES}", b.frames)
    main = cfg.data.buckets[0]
    _rule("data.buckets[0].frames", main.frames >= 2,
          "at least 2 (the main bucket is the clip length the model generates)", main.frames)  # fmt: skip
    from .stages import plan

    plan(cfg)  # the early stages leave the main stage a step, bucket names differ


def _all_buckets(cfg) -> list[tuple[str, Bucket]]:
    out = [(f"data.buckets[{i}]", b) for i, b in enumerate(cfg.data.buckets)]
    for s, stage in enumerate(cfg.data.stages):
        out += [(f"data.stages[{s}].buckets[{i}]", b) for i, b in enumerate(stage.buckets)]
    return out


def check_unet(cfg) -> None:
    """``model.unet`` (a new UNet's arguments): known keys, one entry per level, channels
    divisible by the norm groups."""
    m = cfg.model
    if m.init != "scratch":  # the UNet comes from model.pretrained
        return
    import inspect

    from ..models import PixelDanceUNet

    known = set(inspect.signature(PixelDanceUNet.__init__).parameters) - {"self"}
    unknown = sorted(set(m.unet) - known)
    if unknown:
        raise ConfigError(f"model.unet has unknown keys {unknown}; known: {sorted(known)}")
    missing = [
        k for k in ("block_out_channels", "down_block_types", "up_block_types") if k not in m.unet
    ]
    if missing:
        raise ConfigError(
            f"model.unet.{missing[0]} is missing: model.unet lists the new UNet's arguments "
            "(a --set of one model.unet key without --config replaces the whole default; "
            "see configs/tiny.yaml)"
        )
    channels = m.unet["block_out_channels"]
    if (
        not isinstance(channels, list)
        or not channels
        or not all(_integer(c) and c > 0 for c in channels)
    ):
        raise ConfigError(
            f"model.unet.block_out_channels must be a list of positive integers, got {channels!r}"
        )
    for key in ("down_block_types", "up_block_types"):
        types = m.unet.get(key)
        if not isinstance(types, list) or len(types) != len(channels):
            raise ConfigError(
                f"model.unet.{key} must list one block per level ({len(channels)}, as "
                f"block_out_channels), got {types!r}"
            )
    groups = m.unet.get("norm_num_groups", 8)
    if not _integer(groups) or groups < 1 or any(c % groups for c in channels):
        raise ConfigError(
            f"model.unet.norm_num_groups ({groups!r}) must divide every block_out_channels "
            f"entry {channels}"
        )


def size_multiple(cfg) -> int | None:
    """What every bucket's height and width must be a multiple of: the autoencoder's factor
    times the UNet's down-sampling (None where the model is not a local folder)."""
    from ..generation import Geometry

    m = cfg.model
    if m.init in ("pixeldance", "stable-diffusion"):
        if not m.pretrained or not Path(m.pretrained, "unet", "config.json").is_file():
            return None
        try:
            return Geometry.of_folder(m.pretrained).multiple
        except (OSError, ValueError):
            return None  # told when the folder is checked
    levels = len(m.unet["block_out_channels"])
    if m.vae == "codec":
        return m.codec_patch_size * 2 ** (levels - 1)
    vae_config = Path(m.vae, m.vae_subfolder or "", "config.json")
    if not vae_config.is_file():
        return None
    import json

    try:
        vae = json.loads(vae_config.read_text())
        return 2 ** (len(vae["block_out_channels"]) - 1) * 2 ** (levels - 1)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"model.vae: {vae_config} is not a usable config ({err})") from err


def check_sizes(cfg) -> None:
    """Every bucket's height and width a multiple of the model's :func:`size_multiple`."""
    multiple = size_multiple(cfg)
    if multiple is None:
        return
    for key, b in _all_buckets(cfg):
        for side in ("height", "width"):
            value = getattr(b, side)
            if value % multiple:
                low = max(multiple, value // multiple * multiple)
                raise ConfigError(
                    f"{key}.{side} is {value}: it must be a multiple of {multiple} (the "
                    f"model's autoencoder and UNet down-sampling); nearest: {low} or "
                    f"{low + multiple}"
                )


def check_clip_lengths(cfg, probe_count: int = PROBE_CLIPS) -> None:
    """Every bucket's frames within what the clips can give: the first ``probe_count`` local
    videos of ``data.manifest`` are probed (container headers only); a bucket longer than all
    of them is refused. Shards, URLs and latent caches are not probed (a run whose clips turn
    out too short stops saying so)."""
    d = cfg.data
    if d.latent_cache or not d.manifest or not Path(d.manifest).is_file():
        return
    from ..data.manifest_index import peek_paths
    from ..data.video import VideoError, probe

    lengths = []
    for path in peek_paths(Path(d.manifest), probe_count):
        if "://" in path or not Path(path).is_file():
            continue
        try:
            lengths.append(probe(path).num_frames)
        except (VideoError, OSError):
            continue
    if not lengths:
        return
    longest = max(lengths)
    for key, b in _all_buckets(cfg):
        if b.frames > longest:
            raise ConfigError(
                f"{key}.frames is {b.frames} but the clips of {d.manifest} are too short for "
                f"it: the longest of the {len(lengths)} probed has {longest} frames; lower the "
                "bucket's frames"
            )


def _local_or_hub(value: str) -> bool:
    """A local folder, or what can only be a hub id (``owner/name``, read from the local
    Hugging Face cache)."""
    path = Path(value)
    return path.is_dir() or (
        not path.exists() and value.count("/") == 1 and not value.startswith(("/", "."))
    )


def check_model_paths(cfg) -> None:
    """The folders the model is built from exist (nothing is downloaded at run time)."""
    m = cfg.model
    if m.init == "scratch":
        if m.vae != "codec" and not _local_or_hub(m.vae):
            raise ConfigError(
                f"model.vae is 'codec' or an autoencoder folder; {m.vae} is not a folder"
            )
        if m.text_encoder is not None and not _local_or_hub(m.text_encoder):
            raise ConfigError(
                f"model.text_encoder is a text encoder folder (or null for the default); "
                f"{m.text_encoder} is not a folder"
            )
    elif m.pretrained and not _local_or_hub(m.pretrained):
        raise ConfigError(f"model.pretrained is not a folder: {m.pretrained}")


def check_config(cfg) -> None:
    """Everything that can be known wrong about a training config before any work (see the
    module docstring); raises :class:`ConfigError` naming the key."""
    check_types(cfg)
    check_ranges(cfg)
    check_unet(cfg)
    check_model_paths(cfg)
    check_sizes(cfg)
