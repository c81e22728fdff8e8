"""``--keyframe INDEX:PATH[:TAU]``, ``--sketch-last PATH`` and ``--context-frames K``: parsed
and checked against the model's settings and input layout before anything loads (one line,
nothing written, exit 2)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .common import UsageError

if TYPE_CHECKING:  # torch is imported only by a command that works, not by --help
    from ..keyframes import Keyframe

# measured on held-out Dancing Shapes clips (benchmarks/keyframes_bench.py, RESULTS.md):
# with the shipped model, one context frame (the paper's chaining) is the default
DEFAULT_CONTEXT_FRAMES = 1


def add_keyframe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keyframe",
        action="append",
        default=[],
        metavar="INDEX:PATH[:TAU]",
        help="an image the video passes through at frame INDEX (negative: from the end), "
        "guiding the first TAU denoising steps (default: all for frame 0, else --tau's); "
        "repeatable (a negative INDEX is written --keyframe=-8:PATH)",
    )
    p.add_argument(
        "--sketch-last",
        metavar="PATH",
        help="a drawing or edge map (dark lines on a light ground) the video should end on; "
        "needs a model trained with sketches",
    )


def add_context_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--context-frames",
        type=int,
        default=DEFAULT_CONTEXT_FRAMES,
        metavar="K",
        help="each shot continues from the last K frames of the previous one, pinned as its "
        f"first K keyframes (default {DEFAULT_CONTEXT_FRAMES}: the last frame only)",
    )


def parse_keyframe(text: str) -> tuple[int, str, int | None]:
    """``INDEX:PATH[:TAU]`` -> (index, path, tau or None), or a UsageError."""
    head, sep, rest = text.partition(":")
    try:
        index = int(head)
    except ValueError:
        index = None
    if not sep or index is None or not rest:
        raise UsageError(f"--keyframe takes INDEX:PATH[:TAU] (e.g. 8:mid.png:20), got {text!r}")
    path, tau = rest, None
    stem, sep, tail = rest.rpartition(":")
    if sep and stem and tail.lstrip("-").isdigit():
        path, tau = stem, int(tail)
    return index, path, tau


def user_keyframes(args, read_image) -> list[Keyframe]:
    """The ``--keyframe`` and ``--sketch-last`` keyframes, their images read."""

    from ..keyframes import Keyframe

    out = []
    for text in args.keyframe:
        index, path, tau = parse_keyframe(text)
        out.append(Keyframe(index, image=read_image(path, f"--keyframe {text}"), tau=tau))
    if args.sketch_last:
        image = read_image(args.sketch_last, "--sketch-last")
        out.append(Keyframe(-1, image=image, kind="sketch"))
    return out


def check_call_keyframes(
    folder, settings, first, last, extra: list[Keyframe], context: int = 0
) -> None:
    """Refuse the keyframes of one call (or one shot, after ``context`` frames of the previous
    shot) before loading: as :func:`pixeldance.keyframes.check_keyframes`."""

    from ..keyframes import Keyframe, KeyframeError, check_keyframes, folder_layout

    given = [Keyframe(j, image="(previous shot)") for j in range(context)]
    if first is not None and not context:
        given.append(Keyframe(0, image=first))
    if last is not None:
        given.append(Keyframe(-1, image=last, tau=settings.tau))
    try:
        check_keyframes(
            [*given, *extra],
            settings.num_frames,
            settings.num_inference_steps,
            folder_layout(folder),
            settings.tau,
        )
    except KeyframeError as err:
        raise UsageError(str(err)) from err


def check_context_frames(k: int, shot_frames) -> None:
    if k < 1 or any(k >= f for f in shot_frames):
        raise UsageError(
            f"--context-frames must be at least 1 and less than every shot's frames "
            f"({min(shot_frames)}), got {k}"
        )
