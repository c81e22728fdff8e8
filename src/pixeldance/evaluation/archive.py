"""Tensors out of PyTorch files without running or unpickling anything else.

- A plain checkpoint (``torch.save`` of a state dict, as pytorch-fid's Inception and open_clip
  checkpoints are) is read with ``torch.load(weights_only=True)``, PyTorch's restricted loader.
- A TorchScript archive (OpenAI's ``ViT-B-32.pt``) cannot go through that loader: its
  ``data.pkl`` describes module objects. :func:`torchscript_tensors` reads that pickle with an
  unpickler that builds only plain containers and tensors (module objects become dicts of
  their attributes; any other class is refused) and returns the tensors by their dotted names.
  The archive's code is never loaded or run.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _Object(dict):
    """A TorchScript object (a module): its attributes, nothing else."""

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.update(state)


def _rebuild_tensor(storage, offset, size, stride, *_):
    return torch.empty(0, dtype=storage.dtype).set_(storage, offset, size, stride)


class _TensorsOnly(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return _Object
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only tensors are read")

    def persistent_load(self, pid):
        kind, dtype, key = pid[0], pid[1], pid[2]
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unexpected record {pid!r}")
        raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else None
        if untyped is None:
            return torch.TypedStorage(dtype=dtype, _internal=True)
        return torch.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n for n in z.namelist())


def _flatten(obj, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str) and not k.startswith("_"):
                _flatten(v, f"{prefix}.{k}" if prefix else k, out)


def torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the modules in a TorchScript archive, by dotted name
    (``visual.conv1.weight``...), read from ``data.pkl`` and ``data/`` only."""
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("/data.pkl")]
        if not names:
            raise ValueError(f"{path}: no data.pkl in the archive")
        name = min(names, key=len)
        root = _TensorsOnly(z.read(name), z, name.rsplit("/", 1)[0]).load()
    out: dict[str, torch.Tensor] = {}
    _flatten(root, "", out)
    return out


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict checkpoint (``weights_only=True``) or a TorchScript archive;
    a checkpoint that wraps its state dict in ``state_dict`` or ``model`` is unwrapped."""
    if is_torchscript(path):
        return torchscript_tensors(path)
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        # torch's own advice (weights_only=False) would run the file's code: not repeated
        first = first.split(". In PyTorch")[0][:200]
        raise ValueError(f"{path}: not a tensors-only PyTorch checkpoint ({first})") from err
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(data).__name__}")
    out: dict[str, torch.Tensor] = {}
    _flatten(data, "", out)
    return {k.removeprefix("module."): v for k, v in out.items()}
