"""What every ``pixeldance`` command shares: the error a user can fix, the line between
checking input and doing work, and the checks of paths and counts made before any work."""

from __future__ import annotations

import argparse
from pathlib import Path


class UsageError(Exception):
    """A problem with the user's input, reported as one line (exit code 2)."""


class WorkFailed(RuntimeError):
    """The work itself could not produce a result the user can use (exit code 1): e.g. training
    that found no usable sample, a cache with nothing in it. The message says what to do."""


_STATE = {"working": False}


def work_started() -> None:
    """Mark that input checks are over: an error from here on is a failure of the work (exit 1),
    not a refused input (exit 2)."""
    _STATE["working"] = True


def working() -> bool:
    return _STATE["working"]


def reset() -> None:
    _STATE["working"] = False


# the pipeline's argument names whose flags are shorter (the rest: --name-with-dashes)
FLAGS = {"num_inference_steps": "--steps", "guidance_scale": "--guidance", "num_frames": "--frames"}


def flag_error(err) -> UsageError:
    """A setting error (``err.name`` is the setting) worded with the flag that sets it."""
    message = str(err)
    flag = FLAGS.get(err.name, "--" + err.name.replace("_", "-"))
    if message.startswith(err.name):
        message = flag + message[len(err.name) :]
    return UsageError(message)


def at_least(flag: str, value, minimum) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{flag} must be at least {minimum}, got {value}")


def input_file(path: str | Path, what: str) -> Path:
    """An existing file (not a folder) the command will read."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{what} not found: {path}")
    if path.is_dir():
        raise UsageError(f"{what} is a folder, not a file: {path}")
    if not path.is_file():  # reading a FIFO would wait for a writer forever
        raise UsageError(f"{what} is not a regular file (a pipe or a device?): {path}")
    return path


def destination(
    path: str | Path,
    kind: str,
    overwrite: bool = False,
    flag: str = "--out",
    sources=(),
    add_to: bool = False,
) -> Path:
    """A folder the command will write, checked before any work: new, empty, or recognisably
    this project's output of ``kind`` that the user asked to replace (``--overwrite``) or that
    the command adds to (``add_to``). Nothing is created here; see :mod:`pixeldance.owned`."""
    from ..files import writable_place_problem
    from ..owned import check_destination

    try:
        out = check_destination(path, kind, overwrite, flag, sources, add_to)
    except ValueError as err:
        raise UsageError(str(err)) from err
    problem = writable_place_problem(Path(path) / "x")
    if problem:
        raise UsageError(f"{flag} {path} cannot be written: {problem}")
    return out


def add_placement_args(p: argparse.ArgumentParser, offload: bool) -> None:
    """``--device`` and ``--dtype`` (and ``--offload``), shared by generate, story, demo and
    preprocess; resolved by :func:`pixeldance.devices.resolve_placement`."""
    from ..devices import DEVICE_NAMES, DTYPES

    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=f"{DEVICE_NAMES}; auto: a CUDA GPU, then MPS, then the CPU (default: auto)",
    )
    p.add_argument(
        "--dtype",
        choices=["auto", *DTYPES],
        default="auto",
        help="weights and activations; auto: bfloat16 on a CUDA GPU that has it, float16 on "
        "other GPUs and MPS, float32 on the CPU (default: auto)",
    )
    if offload:
        p.add_argument(
            "--offload",
            action="store_true",
            help="keep the models on the CPU and move each to the GPU only while it runs "
            "(less GPU memory, a little slower; needs a GPU device)",
        )
