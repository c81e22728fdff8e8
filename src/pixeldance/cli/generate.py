"""``pixeldance generate`` and ``pixeldance story``: every setting is resolved and checked (by
:func:`pixeldance.generation.resolve`, the device and dtype too) before the model loads, and a
problem the user can fix is a :class:`UsageError` (one line, no output file). The model's
``generation.json`` and each instruction image are read once; the pipeline gets the settings
resolved here (``settings=``) and checks nothing twice."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..generation import (
    ASPECTS,
    DEFAULT_MAX_PIXELS,
    SCHEDULERS,
    SettingError,
    check_prompt,
)
from ..loading import load_pipeline
from .common import UsageError, add_placement_args, flag_error, work_started
from .keyframe_args import (
    add_context_arg,
    add_keyframe_args,
    check_call_keyframes,
    check_context_frames,
    user_keyframes,
)
from .lora import add_lora_arg, checked_loras, loaded

SEED_HELP = (
    "seed of the noise; the same seed gives the same video on the same kind of device (the "
    "noise is drawn on the GPU with a CUDA device, else on the CPU), not across kinds"
)


def add_generate_parsers(sub) -> None:
    """Register ``generate`` and ``story`` on the ``pixeldance`` sub-command parser."""
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
    add_keyframe_args(g)
    _common_generation_args(g)
    g.set_defaults(func=_cmd_generate)

    s = sub.add_parser("story", help="a long video from a storyboard of shots (YAML or JSON)")
    s.add_argument(
        "storyboard",
        help="file with 'shots: [{prompt, last_frame, tau, keyframes}, ...]' and optional "
        "'first_frame'",
    )
    add_context_arg(s)
    _common_generation_args(s)
    s.set_defaults(func=_cmd_story)


def _common_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="pipeline folder (default: the shipped PixelDance-Shapes model)")
    add_lora_arg(p)
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
    p.add_argument("--aspect", help=f"{', '.join(ASPECTS)} (default: the model's training size)")
    p.add_argument("--height", type=int, help="pixels; overrides --aspect")
    p.add_argument("--width", type=int, help="pixels; overrides --aspect")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse frames larger than this (default {DEFAULT_MAX_PIXELS:,}, 1024x1024); "
        "raise it if the machine has the memory",
    )
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    add_placement_args(p, offload=True)
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of the written video (default: the model's)",
    )
    p.add_argument(
        "--scheduler",
        choices=list(SCHEDULERS),
        default=None,
        help="sampler (default: the model's)",
    )
    p.add_argument(
        "--cache-interval",
        type=int,
        default=None,
        metavar="K",
        help="run the whole UNet every K steps and reuse its deep features in between "
        "(faster, approximate; see benchmarks/RESULTS.md; default: every step in full)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output .mp4 or .gif, or a new folder name for PNG frames; an existing output is "
        "refused unless --overwrite",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out file (or a PNG-frame folder pixeldance wrote) once the "
        "new one is complete",
    )


def _check_prompt(prompt, what: str) -> None:
    try:
        check_prompt(prompt, what)
    except SettingError as err:
        raise UsageError(str(err)) from err


def _read_image(path: str | None, what: str):
    """The image at ``path`` (read here, once, and handed to the pipeline), or None."""
    if path is None:
        return None
    from ..files import read_image

    try:
        return read_image(path)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"{what}: {err}") from err


def _settings(args, num_frames=None, tau=None, shot_taus=(), shot_frames=()):
    """The model folder, its generation.json (read once) and its settings merged with the
    flags, checked once, before loading (:func:`pixeldance.generation.resolve`)."""
    from ..folders import pipeline_folder
    from ..generation import GenerationConfig, Geometry, resolve

    folder = pipeline_folder(args.model)
    try:
        config = GenerationConfig.load(folder)
        settings = resolve(
            config,
            Geometry.of_folder(folder),
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            guidance_interval=args.guidance_interval,
            tau=tau,
            num_frames=num_frames,
            fps=args.fps,
            aspect=args.aspect,
            height=args.height,
            width=args.width,
            scheduler=args.scheduler,
            cache_interval=args.cache_interval,
            device=args.device,
            dtype=args.dtype,
            offload=args.offload,
            shot_taus=shot_taus,
            shot_frames=shot_frames,
            max_pixels=args.max_pixels,
        )
    except SettingError as err:
        raise flag_error(err) from err
    return folder, config, settings


def _write(frames, out: Path, fps: float, overwrite: bool) -> None:
    from ..files import write_video
    from ..images import frames_to_uint8

    path = write_video(frames_to_uint8(frames), out, fps=fps, overwrite=overwrite)
    print(f"wrote {path}")


def _cmd_generate(args) -> int:
    from ..files import check_frame_rate, check_free_space, check_output_path, output_bytes

    out = check_output_path(args.out, args.overwrite)
    _check_prompt(args.prompt, "--prompt")
    if not args.prompt.strip() and args.first_frame is None:
        raise UsageError(
            "--prompt is empty and there is no --first-frame: give a prompt, a first frame, or both"
        )
    first = _read_image(args.first_frame, "--first-frame")
    last = _read_image(args.last_frame, "--last-frame")
    folder, config, settings = _settings(args, num_frames=args.frames, tau=args.tau)
    keyframes = user_keyframes(args, _read_image)
    check_call_keyframes(folder, settings, first, last, keyframes)
    check_frame_rate(out, settings.fps)
    check_free_space(out, output_bytes(out, settings.num_frames, settings.height, settings.width))
    loras = checked_loras(args.lora)
    work_started()
    with loaded():
        pipe = load_pipeline(folder, settings, config, loras)
    result = pipe(
        args.prompt,
        first_frame=first,
        last_frame=last,
        keyframes=keyframes,
        generator=settings.placement.generator(args.seed),
        output_type="np",
        settings=settings,
    )
    _write(result.frames, out, settings.fps, args.overwrite)
    return 0


def _cmd_story(args) -> int:
    from dataclasses import replace

    from ..files import check_frame_rate, check_free_space, check_output_path, output_bytes
    from ..storyboard import load_storyboard

    out = check_output_path(args.out, args.overwrite)
    board = load_storyboard(args.storyboard)
    shots = []
    for k, shot in enumerate(board.shots):
        _check_prompt(shot.prompt, f"shot {k + 1} prompt")
        last = _read_image(shot.last_frame, f"shot {shot.prompt!r} last_frame")
        keys = [
            replace(kf, image=_read_image(kf.image, f"shot {k + 1} keyframe {kf.index}"))
            for kf in shot.keyframes or ()
        ]
        shots.append(replace(shot, last_frame=last, keyframes=keys))
    first = _read_image(board.first_frame, "first_frame")
    taus, frames = [s.tau for s in shots], [s.num_frames for s in shots]
    folder, config, settings = _settings(args, shot_taus=taus, shot_frames=frames)
    check_context_frames(args.context_frames, settings.shot_frames)
    for k, shot in enumerate(shots):
        one = replace(settings, tau=settings.shot_taus[k], num_frames=settings.shot_frames[k])
        context = args.context_frames if k else 0
        check_call_keyframes(folder, one, first, shot.last_frame, shot.keyframes, context)
    check_frame_rate(out, settings.fps)
    check_free_space(
        out, output_bytes(out, sum(settings.shot_frames), settings.height, settings.width)
    )
    loras = checked_loras(args.lora)
    work_started()
    with loaded():
        pipe = load_pipeline(folder, settings, config, loras)
    n = len(shots)

    def progress(k, latents):
        print(f"shot {k + 1} of {n} done", flush=True)
        if k + 1 < n:
            print(f"shot {k + 2} of {n}: {shots[k + 1].prompt}", flush=True)

    print(f"shot 1 of {n}: {shots[0].prompt}", flush=True)
    result = pipe.generate_story(
        shots,
        first_frame=first,
        callback_on_shot=progress,
        context_frames=args.context_frames,
        generator=settings.placement.generator(args.seed),
        output_type="np",
        settings=settings,
    )
    _write(result.frames, out, settings.fps, args.overwrite)
    return 0
