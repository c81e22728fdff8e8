"""The ``pixeldance`` command line: parses arguments, then calls the library.

Errors a user can fix (a missing file, a bad size, a bad value) end the command with a one-line
message and a non-zero exit code, no traceback, and no output file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .cli_eval import add_eval_parser
from .cli_generate import (
    UsageError,
    _cmd_generate,
    _cmd_story,
    _common_generation_args,
    _flag_error,
    add_placement_args,
)


# ---------------------------------------------------------------- data
def _cmd_make_shapes(args) -> int:
    from .data.shapes import write_dataset

    if not 0.0 <= args.mover_share <= 1.0:
        raise UsageError(f"--mover-share must be between 0 and 1, got {args.mover_share}")
    write_dataset(
        args.out,
        args.num,
        args.seed,
        num_images=args.images,
        workers=args.workers,
        mover_share=args.mover_share,
    )
    print(f"wrote {args.num} clips to {args.out} (manifest.csv, images.csv, params/)")
    return 0


def _cmd_check_data(args) -> int:
    from .data.check import check_manifest

    report = check_manifest(
        args.manifest, num_frames=args.frames, fps=args.fps, workers=args.workers
    )
    print(report.summary())
    return 1 if report.bad and args.strict else 0


def _cmd_preprocess(args) -> int:
    from .data.latents import preprocess
    from .devices import PlacementError, resolve_placement
    from .train.config import load_config
    from .train.setup import build_components, data_buckets, prompt_encoder

    try:
        placement = resolve_placement(args.device, args.dtype)
    except PlacementError as err:
        raise _flag_error(err) from err
    cfg = load_config(args.config, args.set)
    comps = build_components(cfg)
    index = preprocess(
        args.out,
        comps.vae,
        prompt_encoder(comps),
        data_buckets(cfg),
        manifest=args.data or cfg.data.manifest,
        images=args.images or cfg.data.images,
        fps=cfg.data.fps,
        clips_per_video=args.clips_per_video,
        seed=cfg.run.seed,
        device=placement.device,
        dtype=placement.torch_dtype,
    )
    n = sum(s["count"] for s in index["shards"])
    print(
        f"wrote {n} cached samples in {len(index['shards'])} shards to {args.out}; bad files: {index['bad_files']}"
    )
    return 0


# ---------------------------------------------------------------- train
def _cmd_train(args) -> int:
    from .train.config import load_config
    from .train.loop import train

    overrides = list(args.set)
    if args.data:
        key = (
            "data.latent_cache"
            if Path(args.data, "index.json").exists()
            else (
                "data.shards" if args.data.endswith(".tar") or "{" in args.data else "data.manifest"
            )
        )
        overrides.append(f"{key}={args.data}")
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
    final = train(cfg, resume=args.resume)
    print(f"pipeline saved to {final}")
    return 0


def _cmd_export(args) -> int:
    import json as _json

    from .export import export_pipeline
    from .generation import GenerationConfig, SettingError

    try:
        choices = _json.loads(args.choices) if args.choices else {}
    except ValueError as err:
        raise UsageError(f"--choices is not valid JSON ({err}): {args.choices}") from err
    if not isinstance(choices, dict):
        raise UsageError(f"--choices must be a JSON object, got {args.choices}")
    try:
        if args.config:
            from .train.config import load_config

            generation = GenerationConfig.from_training(load_config(args.config), **choices)
        else:
            generation = GenerationConfig.from_dict(choices, "--choices") if choices else None
    except SettingError as err:
        raise UsageError(str(err).replace("generation settings", "--choices")) from err
    path = export_pipeline(
        args.pipeline, args.out, half=not args.full_precision, generation=generation
    )
    print(f"exported {args.pipeline} to {path}")
    return 0


def _cmd_info(args) -> int:
    import torch

    from . import __version__

    print(f"pixeldance {__version__}, torch {torch.__version__}, cuda {torch.cuda.is_available()}")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixeldance", description="PixelDance video diffusion: generate, train, measure."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser(
        "generate", help="make a video from a text, a first frame and an optional last frame"
    )
    g.add_argument("--prompt", required=True, help="what happens in the video")
    g.add_argument(
        "--first-frame", help="image the video starts from (default: start from the text alone)"
    )
    g.add_argument("--last-frame", help="image the video should end near")
    g.add_argument(
        "--tau", type=int, help="the last frame guides this many of the first denoising steps"
    )
    g.add_argument("--frames", type=int, help="number of frames (default: the model's)")
    _common_generation_args(g)
    g.set_defaults(func=_cmd_generate)

    s = sub.add_parser("story", help="a long video from a storyboard of shots (YAML or JSON)")
    s.add_argument(
        "storyboard",
        help="file with 'shots: [{prompt, last_frame, tau}, ...]' and optional 'first_frame'",
    )
    _common_generation_args(s)
    s.set_defaults(func=_cmd_story)

    t = sub.add_parser("train", help="train a model (python, torchrun or accelerate launch)")
    t.add_argument("--config", help="YAML config (see configs/)")
    t.add_argument("--data", help="manifest (CSV/JSONL), tar shards, or a latent cache folder")
    t.add_argument("--output-dir")
    t.add_argument("--max-steps", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint"
    )
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. optim.lr=1e-4",
    )
    t.set_defaults(func=_cmd_train)

    m = sub.add_parser(
        "make-shapes", help="write a Dancing Shapes dataset (mp4 + manifest + ground truth)"
    )
    m.add_argument("--out", required=True)
    m.add_argument("--num", type=int, required=True, help="number of clips")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--images", type=int, help="number of captioned stills (default: num / 2)")
    m.add_argument("--workers", type=int, default=1)
    m.add_argument(
        "--mover-share",
        type=float,
        default=0.0,
        metavar="P",
        help="share of the clips (0-1) drawn as single movers under a still camera "
        "(the world's own mix has about 8%%); default 0: the world as it is",
    )
    m.set_defaults(func=_cmd_make_shapes)

    c = sub.add_parser("check-data", help="scan a manifest and report bad files without training")
    c.add_argument("manifest")
    c.add_argument("--frames", type=int, default=16)
    c.add_argument("--fps", type=float, default=4.0)
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--strict", action="store_true", help="exit 1 if any file is bad")
    c.set_defaults(func=_cmd_check_data)

    pp = sub.add_parser("preprocess", help="encode clips and captions once into a latent cache")
    pp.add_argument("--config", help="YAML config (model and buckets)")
    pp.add_argument("--data", help="manifest of videos (default: the config's)")
    pp.add_argument("--images", help="captioned images (default: the config's)")
    pp.add_argument("--out", required=True)
    pp.add_argument("--clips-per-video", type=int, default=1)
    pp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add_placement_args(pp, offload=False)
    pp.set_defaults(func=_cmd_preprocess)

    e = sub.add_parser(
        "export", help="copy a trained pipeline for shipping (UNet in float16, generation.json)"
    )
    e.add_argument("pipeline", help="pipeline folder written by train")
    e.add_argument("--out", required=True)
    e.add_argument(
        "--config", help="the training config: frames, fps and sizes for generation.json"
    )
    e.add_argument(
        "--choices", help="JSON of measured generation settings, e.g. '{\"guidance\": 3.0}'"
    )
    e.add_argument("--full-precision", action="store_true", help="keep float32 weights")
    e.set_defaults(func=_cmd_export)

    dm = sub.add_parser(
        "demo",
        help="serve a web page that generates videos (needs the demo extra: Gradio)",
        description="A Gradio page around the pipeline: one generation at a time, a bounded "
        "queue, bounded inputs. Needs pip install 'pixeldance[demo]'.",
    )
    dm.add_argument("--model", help="pipeline folder (default: the shipped model)")
    dm.add_argument("--host", default="127.0.0.1", help="address to listen on")
    dm.add_argument("--port", type=int, default=7860)
    dm.add_argument("--queue", type=int, default=8, help="requests allowed to wait")
    dm.add_argument("--share", action="store_true", help="ask Gradio for a public link")
    add_placement_args(dm, offload=True)
    dm.set_defaults(func=_cmd_demo)

    add_eval_parser(sub)

    i = sub.add_parser("info", help="print versions")
    i.set_defaults(func=_cmd_info)
    return parser


def _cmd_demo(args) -> int:
    from .demo import DemoRunner, build_app
    from .generation import SettingError

    if args.queue < 1:
        raise UsageError(f"--queue must be at least 1, got {args.queue}")
    try:
        runner = DemoRunner(args.model, device=args.device, dtype=args.dtype, offload=args.offload)
        app = build_app(runner, queue_size=args.queue)
    except SettingError as err:
        raise _flag_error(err) from err
    except ImportError as err:
        raise UsageError(str(err)) from err
    app.launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "train" else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (UsageError, FileNotFoundError, ValueError) as err:
        print(f"pixeldance {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pixeldance {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
