"""Reading a network's weights file as the network it is given as: TorchScript checked by its
``forward``'s arguments, safetensors built into the network; every failure one line naming
the file (:class:`WeightsUnreadable`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


class WeightsUnreadable(ValueError):
    """A weights file that is not the network it is given as: empty, truncated, a folder, or
    another network."""


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(err).__name__


def jit_load(p: Path, device, what: str, arguments: tuple[str, ...] = ()):
    """``torch.jit.load`` of ``p`` (eval mode), checked to be ``what``: its ``forward`` takes
    the keyword ``arguments`` the metric calls it with. One :class:`WeightsUnreadable` line
    for a file that cannot be loaded or is another network."""
    with warnings.catch_warnings():  # torch marks TorchScript deprecated; these files are it
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            module = torch.jit.load(str(p), map_location=device).eval()
        except (RuntimeError, ValueError, OSError) as err:
            raise WeightsUnreadable(
                f"{p} could not be loaded as {what} (empty, truncated or not TorchScript: "
                f"{_first_line(err)})"
            ) from err
    try:
        takes = [a.name for a in module.forward.schema.arguments][1:]
    except (AttributeError, RuntimeError):
        takes = None
    missing = [a for a in arguments if takes is not None and a not in takes]
    if missing:
        raise WeightsUnreadable(
            f"{p} is not {what}: its forward takes ({', '.join(takes or [])}), not "
            f"{', '.join(missing)}"
        )
    return module


def read_safetensors(p: Path, what: str, build):
    """``build(tensors, metadata)`` from the safetensors file ``p``; a file that cannot be
    read, or whose tensors are not ``what``, is one :class:`WeightsUnreadable` line."""
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
        return build(tensors, meta)
    except (ValueError, KeyError, RuntimeError, OSError, TypeError) as err:
        raise WeightsUnreadable(f"{p} is not {what}: {_first_line(err)}") from err
    except Exception as err:  # safetensors' own SafetensorError
        if type(err).__name__ != "SafetensorError":
            raise
        raise WeightsUnreadable(f"{p} is not a readable safetensors file ({err})") from err
