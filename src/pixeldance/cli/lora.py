"""``--lora PATH[:SCALE]`` (repeatable) on ``generate``, ``story`` and ``demo``, and
``export --merge``: adapters checked before any work (present, safetensors), their fit to the
model when it loads; every refusal is one line, exit 2, nothing written."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from .common import UsageError

LORA_HELP = (
    "apply a LoRA adapter (a folder written by a LoRA training run: adapter_config.json + "
    "adapter_model.safetensors) at SCALE (default 1); repeat for several"
)


def add_lora_arg(p: argparse.ArgumentParser, flag: str = "--lora", help: str = LORA_HELP) -> None:
    p.add_argument(flag, action="append", default=[], metavar="PATH[:SCALE]", help=help)


def checked_loras(specs: list[str], flag: str = "--lora") -> list[tuple[str, float]]:
    """``(path, scale)`` of each ``PATH[:SCALE]``; a missing or pickle adapter is refused."""
    from ..models.lora import AdapterError, adapter_files, parse_lora_spec

    out = []
    for spec in specs or ():
        path, scale = parse_lora_spec(spec)
        try:
            adapter_files(path)
        except AdapterError as err:
            raise UsageError(f"{flag} {spec}: {err}") from err
        out.append((path, scale))
    return out


@contextmanager
def loaded(flag: str = "--lora") -> Iterator[None]:
    """An adapter that does not fit the model is the user's to fix (exit 2), even though the
    model has started loading."""
    from ..models.lora import AdapterError

    try:
        yield
    except AdapterError as err:
        raise UsageError(f"{flag}: {err}") from err
