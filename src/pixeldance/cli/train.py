"""``pixeldance train`` and ``pixeldance export``. The config, the data and the output folder are
checked before a run folder is made."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .common import UsageError, at_least, destination, input_file, work_started
from .lora import add_lora_arg, checked_loras, loaded


def add_train_parsers(sub) -> None:
    t = sub.add_parser("train", help="train a model (python, torchrun or accelerate launch)")
    t.add_argument("--config", help="YAML config (see configs/)")
    t.add_argument("--data", help="manifest (CSV/JSONL), tar shards, or a latent cache folder")
    t.add_argument("--output-dir", help="run folder: config, checkpoints, logs, the pipeline")
    t.add_argument("--max-steps", type=int)
    t.add_argument("--checkpoint-every", type=int, help="0: only at the end")
    t.add_argument("--seed", type=int)
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="continue from the newest complete checkpoint of --output-dir, or from the "
        "checkpoint folder given",
    )
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. optim.lr=1e-4",
    )
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser(
        "export", help="copy a trained pipeline for shipping (UNet in float16, generation.json)"
    )
    e.add_argument("pipeline", help="pipeline folder written by train")
    e.add_argument(
        "--out",
        required=True,
        help="a new (or empty) folder to write; a pipeline folder pixeldance wrote is replaced "
        "only with --overwrite, any other existing folder is refused",
    )
    e.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is a pixeldance pipeline"
    )
    e.add_argument(
        "--config", help="the training config: frames, fps and sizes for generation.json"
    )
    e.add_argument(
        "--choices", help="JSON of measured generation settings, e.g. '{\"guidance_scale\": 3.0}'"
    )
    e.add_argument("--full-precision", action="store_true", help="keep float32 weights")
    add_lora_arg(
        e,
        "--merge",
        "fold this LoRA adapter (a LoRA run's adapter/ folder) into the UNet at SCALE "
        "(default 1); repeat for several: the copy is a plain pipeline",
    )
    e.set_defaults(func=_cmd_export)


def _data_key(data: str) -> str:
    if Path(data, "index.json").exists():
        return "data.latent_cache"
    if data.endswith(".tar") or "{" in data:
        return "data.shards"
    return "data.manifest"


def _cmd_train(args) -> int:
    from ..train.checkpoint import resume_point
    from ..train.config import load_config
    from ..train.config_check import check_config

    at_least("--max-steps", args.max_steps, 1)
    at_least("--checkpoint-every", args.checkpoint_every, 0)
    if args.config is not None:
        input_file(args.config, "--config")
    overrides = list(args.set)
    if args.data:
        overrides.append(f"{_data_key(args.data)}={args.data}")
    for flag, key in (
        ("output_dir", "run.output_dir"),
        ("max_steps", "optim.max_steps"),
        ("checkpoint_every", "run.checkpoint_every"),
        ("seed", "run.seed"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(args.config, overrides)
    check_config(cfg)  # every key, before anything is built
    check_training_inputs(cfg)
    try:  # a damaged checkpoint is named before anything is built
        resume_point(Path(cfg.run.output_dir), args.resume)
    except ValueError as err:
        raise UsageError(str(err)) from err
    work_started()
    from ..train.loop import train

    final = train(cfg, resume=args.resume)
    print(f"{final.name} saved to {final}")
    return 0


def check_training_inputs(cfg) -> None:
    """What can be known wrong about a run before its folder is made: data paths that are
    missing or of the wrong kind, a stills list given as the videos, an output folder that
    cannot be written."""
    from ..data.check import image_list_problem
    from ..data.manifest_index import manifest_problem
    from ..train.config_check import check_clip_lengths
    from ..train.distributed import check_launch, launch_mismatch
    from ..train.pretrained import PIPELINE_INITS, check_layout
    from ..train.stages import plan

    check_launch(cfg.optim.fsdp, cfg.optim.mixed_precision)  # DeepSpeed, FSDP plugin...
    mismatch = launch_mismatch()
    if mismatch:
        logging.getLogger("pixeldance.train").warning(mismatch)
    plan(cfg)  # the stages fit the run

    m = cfg.model
    if m.init in PIPELINE_INITS and m.pretrained:
        from ..folders import pipeline_folder

        buckets = [b for stage in cfg.data.stages for b in stage.buckets] + cfg.data.buckets
        check_layout(pipeline_folder(m.pretrained), buckets)
    elif m.init == "stable-diffusion" and m.pretrained and Path(m.pretrained).is_dir():
        from ..folders import check_weights

        for sub in ("unet", "vae", "text_encoder"):
            if not Path(m.pretrained, sub).is_dir():
                raise UsageError(f"model.pretrained has no {sub}/ folder: {m.pretrained}")
            check_weights(Path(m.pretrained, sub))
    if cfg.optim.trainable == "lora":
        _check_lora_targets(cfg)
    d = cfg.data
    if d.latent_cache:
        if not Path(d.latent_cache, "index.json").is_file():
            raise UsageError(
                f"data.latent_cache is not a latent cache (no index.json): {d.latent_cache}; "
                "make one with `pixeldance preprocess`"
            )
    elif d.manifest:
        input_file(d.manifest, "the manifest (data.manifest)")
        problem = manifest_problem(d.manifest) or image_list_problem(d.manifest)
        if problem:
            raise UsageError(problem)
        check_clip_lengths(cfg)
    elif d.shards:
        from ..data.shards import ShardError, expand_shards

        try:  # a malformed pattern or missing local shards, before any work
            expand_shards(d.shards)
        except ShardError as err:
            raise UsageError(str(err)) from None
    else:
        raise UsageError(
            "no training data: pass --data MANIFEST (or shards, or a latent cache folder)"
        )
    if d.images and not Path(d.images).exists():
        raise UsageError(f"data.images not found: {d.images}")
    if d.images and Path(d.images).is_file():
        problem = manifest_problem(d.images)
        if problem:
            raise UsageError(f"data.images: {problem}")
    destination(cfg.run.output_dir, "run", flag="the run folder (--output-dir)", add_to=True)


def _check_lora_targets(cfg) -> None:
    """optim.lora.targets match modules of the UNet the run will train (built on the meta
    device from its config: no memory, no weights)."""
    import torch

    from ..models import PixelDanceUNet
    from ..models.lora import AdapterError, resolve_targets
    from ..train.pretrained import PIPELINE_INITS

    m = cfg.model
    if m.init in PIPELINE_INITS and m.pretrained:
        config = json.loads(Path(m.pretrained, "unet", "config.json").read_text())
        config = {k: v for k, v in config.items() if not k.startswith("_")}
    elif m.init == "scratch":
        config = {"in_channels": 8, "out_channels": 4, "cross_attention_dim": 8, **m.unet}
    else:
        return  # an inflated Stable Diffusion UNet: checked when it is built
    try:
        with torch.device("meta"):
            unet = PixelDanceUNet(**config)
        resolve_targets(unet, cfg.optim.lora.targets)
    except AdapterError as err:
        raise UsageError(f"optim.lora.targets: {err}") from err


def _cmd_export(args) -> int:
    from ..devices import Placement
    from ..export import export_pipeline
    from ..folders import pipeline_folder
    from ..generation import GenerationConfig, Geometry, SettingError, resolve

    try:
        choices = json.loads(args.choices) if args.choices else {}
    except ValueError as err:
        raise UsageError(f"--choices is not valid JSON ({err}): {args.choices}") from err
    if not isinstance(choices, dict):
        raise UsageError(f"--choices must be a JSON object, got {args.choices}")
    try:
        if args.config:
            from ..train.config import load_config
            from ..train.config_check import check_config

            config = load_config(input_file(args.config, "--config"))
            check_config(config)
            generation = GenerationConfig.from_training(config, **choices)
        else:
            generation = GenerationConfig.from_dict(choices, "--choices") if choices else None
        source = pipeline_folder(args.pipeline)
        if generation is not None:  # the one check of generation settings
            resolve(generation, Geometry.of_folder(source), placement=Placement())
    except SettingError as err:
        raise UsageError(str(err).replace("generation settings", "--choices")) from err
    merge = checked_loras(args.merge, "--merge")
    out = destination(args.out, "pipeline", args.overwrite, sources=[source])
    work_started()
    with loaded("--merge"):
        path = export_pipeline(
            source,
            out,
            half=not args.full_precision,
            generation=generation,
            overwrite=args.overwrite,
            loras=merge,
        )
    print(f"exported {args.pipeline} to {path}")
    return 0
