"""Pipeline folders on disk: where the shipped model lives, and the check that a folder is one.

A pipeline folder is a diffusers folder (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``) with an optional ``generation.json``.
Weights load from safetensors only; :func:`pipeline_folder` reads every weights file's header
(not its tensors) so a missing, pickle-only, truncated or corrupted file is named before
anything loads.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

SHIPPED_NAME = "pixeldance-shapes"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_MAX_HEADER = 100 * 1024 * 1024  # a safetensors header larger than this is not one


def shipped_model_path() -> Path:
    """Folder of the model that ships inside the package (PixelDance-Shapes)."""
    return Path(__file__).resolve().parent / "assets" / SHIPPED_NAME


def pipeline_folder(path: str | Path | None) -> Path:
    """``path`` checked to be a loadable pipeline folder (None: the shipped model's folder).

    Raises FileNotFoundError for a missing path and ValueError naming the file for a folder that
    is not a pipeline folder or whose weights are pickle-only, truncated or corrupted.
    """
    folder = Path(path) if path is not None else shipped_model_path()
    if not folder.exists():
        raise FileNotFoundError(f"model folder not found: {folder}")
    index = folder / "model_index.json"
    if not index.is_file():
        raise ValueError(f"not a pixeldance pipeline folder (no model_index.json): {folder}")
    components = _read_json(index)
    if not isinstance(components, dict) or "_class_name" not in components:
        raise ValueError(f"{index} is not a pipeline index (no _class_name)")
    for name, spec in components.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[:1] == [None]:
            continue
        sub = folder / name
        if not sub.is_dir():
            raise ValueError(f"{folder}: model_index.json names {name!r} but there is no {sub}")
        check_weights(sub)
    return folder


def check_weights(folder: Path) -> None:
    """A component folder's weights are safetensors whose headers match their sizes."""
    config = folder / "config.json"
    if config.is_file():
        _read_json(config)
    safetensors = sorted(folder.glob("*.safetensors"))
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not safetensors:
        raise ValueError(
            f"{folder} holds only pickle weights ({', '.join(pickles)}); pixeldance loads "
            "safetensors only. If you trust the file, convert it once with its library, e.g. "
            "Model.from_pretrained(folder, use_safetensors=False).save_pretrained(folder), "
            "then load again"
        )
    for path in safetensors:
        _check_safetensors(path)


def _check_safetensors(path: Path) -> None:
    size = path.stat().st_size
    bad = f"{path} is truncated or not a safetensors file"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{bad} ({size} bytes)")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, _MAX_HEADER):
            raise ValueError(f"{bad} (header of {length} bytes in a file of {size})")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{bad} (unreadable header: {err})") from err
    if not isinstance(header, dict):
        raise ValueError(f"{bad} (its header is not a table of tensors)")
    tensors = {
        k: v
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v
    }
    for name, entry in tensors.items():
        problem = _entry_problem(entry)
        if problem:
            raise ValueError(f"{bad}: tensor {name!r} {problem}")
    ends = [v["data_offsets"][1] for v in tensors.values()]
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        raise ValueError(f"{bad}: its header describes {expected} bytes, the file has {size}")


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip


def _entry_problem(entry: dict) -> str | None:
    """What is wrong with one tensor's header entry: a shape whose bytes are not its span."""
    shape, offsets, dtype = entry.get("shape"), entry.get("data_offsets"), entry.get("dtype")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        return f"has no valid shape ({shape!r})"
    if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1]):
        return f"has no valid data offsets ({offsets!r})"
    if dtype not in _DTYPE_BYTES:
        return None  # a dtype this check does not know: left to the loader
    count = 1
    for d in shape:
        count *= d
    if count * _DTYPE_BYTES[dtype] != offsets[1] - offsets[0]:
        return (
            f"claims shape {shape} ({count * _DTYPE_BYTES[dtype]:,} bytes of {dtype}) but spans "
            f"{offsets[1] - offsets[0]:,} bytes"
        )
    return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
