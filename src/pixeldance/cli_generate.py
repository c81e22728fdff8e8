"""``pixeldance generate`` and ``pixeldance story``: every setting is checked before the model
loads, and a problem the user can fix is a :class:`UsageError` (one line, no output file)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .shipped import ASPECTS


class UsageError(Exception):
    """A problem with the user's input, reported as one line."""


# ---------------------------------------------------------------- generate / story
def _model_path(model: str | None) -> Path:
    from .shipped import shipped_model_path

    path = Path(model) if model else shipped_model_path()
    if not (path / "model_index.json").exists():
        raise UsageError(f"not a pixeldance pipeline folder (no model_index.json): {path}")
    return path


def _load_pipeline(path: Path):
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from .pipeline import PixelDancePipeline

    diffusers_logging.disable_progress_bar()  # one progress bar: the denoising one
    transformers_logging.disable_progress_bar()
    pipe = PixelDancePipeline.from_pretrained(path)
    pipe.set_progress_bar_config(desc="denoising", leave=False)
    return pipe


def _size(pipe, aspect: str | None, height: int | None, width: int | None) -> tuple[int, int]:
    base_h, base_w = pipe.default_size()
    if aspect is not None:
        from .shipped import size_for_aspect

        base_h, base_w = size_for_aspect(pipe, aspect)
    return height or base_h, width or base_w


def _check_image(path: str | None, what: str) -> None:
    if path is None:
        return
    from .io import read_image

    try:
        read_image(path)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"{what}: {err}") from err


def _common_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="pipeline folder (default: the shipped PixelDance-Shapes model)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance scale on the text"
    )
    p.add_argument(
        "--guidance-interval",
        type=int,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="guide only the steps whose timestep lies in [LOW, HIGH], e.g. 700 1000 "
        "(default: the model's; without one, every step)",
    )
    p.add_argument("--aspect", help="1:1, 16:9 or 9:16 (default: the model's training size)")
    p.add_argument("--height", type=int, help="pixels; overrides --aspect")
    p.add_argument("--width", type=int, help="pixels; overrides --aspect")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of the written video (default: the model's)",
    )
    p.add_argument(
        "--scheduler",
        choices=["ddim", "dpm++", "euler"],
        default=None,
        help="sampler (default: the model's)",
    )
    p.add_argument(
        "--out", required=True, help="output .mp4, .gif, or a folder name for PNG frames"
    )


def _settings(path: Path, args):
    """Generation settings, checked before the model is loaded."""
    from .shipped import generation_defaults

    d = generation_defaults(path)
    steps = args.steps if args.steps is not None else d["steps"]
    if steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    interval = args.guidance_interval
    if interval is not None and not 0 <= interval[0] <= interval[1]:
        raise UsageError(
            f"--guidance-interval needs 0 <= LOW <= HIGH, got {interval[0]} {interval[1]}"
        )
    if args.aspect is not None and args.aspect not in ASPECTS:
        raise UsageError(f"unknown aspect {args.aspect!r}; use one of {', '.join(ASPECTS)}")
    return d, steps


def _use_scheduler(pipe, name: str | None) -> None:
    if name:
        from .shipped import make_scheduler

        pipe.scheduler = make_scheduler(name, pipe.scheduler.config)


def _write(frames, out: Path, fps: float) -> None:
    from .io import write_video
    from .pipeline import frames_to_uint8

    path = write_video(frames_to_uint8(frames), out, fps=fps)
    print(f"wrote {path}")


def _prepare(path: Path, args, d: dict, steps: int):
    """Load the pipeline and the call arguments that generate and story share."""
    import torch

    pipe = _load_pipeline(path)
    _use_scheduler(pipe, args.scheduler)
    height, width = _size(pipe, args.aspect, args.height, args.width)
    return pipe, dict(
        num_inference_steps=steps,
        guidance_scale=args.guidance if args.guidance is not None else d["guidance"],
        guidance_interval=args.guidance_interval or d["guidance_interval"],
        height=height,
        width=width,
        generator=torch.Generator().manual_seed(args.seed),
        instruction_noise=d["instruction_noise"],
        output_type="np",
    )


def _cmd_generate(args) -> int:
    from .io import check_output_path

    out = check_output_path(args.out)
    _check_image(args.first_frame, "--first-frame")
    _check_image(args.last_frame, "--last-frame")
    path = _model_path(args.model)
    d, steps = _settings(path, args)
    tau = args.tau if args.tau is not None else min(d["tau"], steps)
    if not 0 <= tau <= steps:
        raise UsageError(f"--tau must be between 0 and --steps ({steps}), got {tau}")
    if args.frames is not None and args.frames < 2:
        raise UsageError(f"--frames must be at least 2, got {args.frames}")
    pipe, kwargs = _prepare(path, args, d, steps)
    result = pipe(
        args.prompt,
        first_frame=args.first_frame,
        last_frame=args.last_frame,
        tau=tau,
        num_frames=args.frames or d["frames"],
        **kwargs,
    )
    _write(result.frames, out, args.fps or d["fps"])
    return 0


def _cmd_story(args) -> int:
    from .io import check_output_path
    from .storyboard import load_storyboard

    out = check_output_path(args.out)
    board = load_storyboard(args.storyboard)
    for shot in board.shots:
        _check_image(shot.last_frame, f"shot {shot.prompt!r} last_frame")
    _check_image(board.first_frame, "first_frame")
    path = _model_path(args.model)
    d, steps = _settings(path, args)
    for shot in board.shots:
        if shot.tau is not None and not 0 <= shot.tau <= steps:
            raise UsageError(
                f"shot {shot.prompt!r}: tau must be between 0 and {steps}, got {shot.tau}"
            )
    pipe, kwargs = _prepare(path, args, d, steps)
    result = pipe.generate_story(
        board.shots,
        first_frame=board.first_frame,
        tau=min(d["tau"], steps),
        num_frames=d["frames"],
        **kwargs,
    )
    _write(result.frames, out, args.fps or d["fps"])
    return 0
