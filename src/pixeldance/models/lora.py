"""LoRA adapters on the PixelDance UNet, through the ``peft`` library (Hu et al. 2021).

An adapter adds ``scale * (alpha / rank) * B @ A`` to chosen linear and 1x1-convolution weights;
``B`` starts at zero, so a freshly added adapter changes nothing. Adapters are injected into
the UNet itself (peft's ``inject_adapter_in_model``, as diffusers does), so the model keeps its
class, config, gradient checkpointing and sharding.

On disk an adapter is peft's folder: ``adapter_config.json`` (a ``LoraConfig``) and
``adapter_model.safetensors`` (the LoRA tensors, keys ``base_model.model.<module>.lora_A.weight``
as ``PeftModel.save_pretrained`` writes them). Only safetensors are read; a folder holding a
pickle adapter (``adapter_model.bin``) is refused. An adapter whose target modules are not in
the model is refused, naming them.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch
from torch import nn

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
PICKLE_NAMES = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")

# the attention projections, spatial (self- and cross-attention of every transformer block)
# and temporal (the fused q/k/v and the output of every temporal attention): the usual LoRA
# targets of diffusion UNets
DEFAULT_TARGETS = (
    r".*\.attn[12]\.(to_q|to_k|to_v|to_out\.0)",
    r".*\.temp_attentions\.\d+\.(to_qkv|to_out)",
)
_SUPPORTED = (nn.Linear, nn.Conv2d)


class AdapterError(ValueError):
    """An adapter that cannot be applied: missing, pickle-only, or made for another model."""


def resolve_targets(model: nn.Module, patterns: list[str] | tuple[str, ...]) -> list[str]:
    """The names of the modules of ``model`` that the regular expressions ``patterns`` match
    in full (linear layers and convolutions only). A pattern that matches nothing, or matches
    a module LoRA cannot wrap, is refused, naming it."""
    names = {n: m for n, m in model.named_modules() if n}
    found: list[str] = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise AdapterError(f"LoRA target pattern {pattern!r} is not a regex: {err}") from err
        hits = [n for n in names if regex.fullmatch(n)]
        if not hits:
            raise AdapterError(f"LoRA target pattern {pattern!r} matches no module of the UNet")
        wrong = [n for n in hits if not isinstance(names[n], _SUPPORTED)]
        if wrong:
            raise AdapterError(
                f"LoRA target pattern {pattern!r} matches {wrong[0]} "
                f"({type(names[wrong[0]]).__name__}); only Linear and Conv2d layers take LoRA"
            )
        found += [n for n in hits if n not in found]
    return found


def add_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    dropout: float,
    patterns: list[str] | tuple[str, ...],
    adapter_name: str = "default",
):
    """Wrap the modules ``patterns`` select with a new trainable LoRA adapter; returns its
    ``peft.LoraConfig``. Only the adapter's tensors require gradients afterwards."""
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise AdapterError(f"LoRA rank must be at least 1, got {rank}")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=resolve_targets(model, patterns),
        init_lora_weights=True,  # B = 0: the adapter starts as a no-op
    )
    model.requires_grad_(False)
    inject_adapter_in_model(config, model, adapter_name=adapter_name)
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name and f".{adapter_name}." in name)
    return config


def copy_lora_layout(source: nn.Module, target: nn.Module) -> None:
    """Give ``target`` (the same architecture as ``source``) ``source``'s adapters, freshly
    initialised, to load trained adapter tensors into."""
    import copy

    from peft import inject_adapter_in_model

    for name, config in source.peft_config.items():
        inject_adapter_in_model(copy.deepcopy(config), target, adapter_name=name)


def _takes_lora(module: nn.Module | None) -> bool:
    """A layer LoRA can wrap, or one wrapped already (another adapter goes beside)."""
    base = getattr(module, "base_layer", module)
    return isinstance(base, _SUPPORTED)


def _check_shapes(modules: dict, state: dict[str, torch.Tensor], weights: Path) -> None:
    """Each ``lora_A`` reads its layer's input width and each ``lora_B`` writes its output."""
    for key, tensor in state.items():
        module_name, _, rest = key.partition(".lora_")
        base = getattr(modules[module_name], "base_layer", modules[module_name])
        conv = isinstance(base, nn.Conv2d)
        width = (
            (base.in_channels if conv else base.in_features)
            if rest.startswith("A")
            else (base.out_channels if conv else base.out_features)
        )
        axis = 1 if rest.startswith("A") else 0
        if tensor.ndim < 2 or tensor.shape[axis] != width:
            raise AdapterError(
                f"{weights}: {key} has shape {tuple(tensor.shape)} but {module_name} is "
                f"{tuple(base.weight.shape)}; the adapter was made for another model"
            )


def lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def has_lora(model: nn.Module) -> bool:
    return bool(lora_layers(model))


def adapter_state(model: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter's tensors, keyed as peft saves them."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter_name, save_embedding_layers=False)
    return {PEFT_PREFIX + k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_adapter(
    model: nn.Module, config, folder: str | Path, base_model: str | None, adapter_name="default"
) -> Path:
    """Write the adapter alone into the folder ``folder`` (the caller makes it complete, then
    renames it into place)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config.base_model_name_or_path = str(Path(base_model).resolve()) if base_model else None
    save_file(adapter_state(model, adapter_name), folder / ADAPTER_WEIGHTS)
    config.save_pretrained(str(folder))
    return folder


def adapter_files(path: str | Path) -> tuple[Path, Path]:
    """``(adapter_config.json, adapter_model.safetensors)`` of an adapter folder or of its
    weights file; a missing adapter or a pickle one is refused in one line."""
    path = Path(path)
    if not path.exists():
        raise AdapterError(f"LoRA adapter not found: {path}")
    folder, weights = (path, path / ADAPTER_WEIGHTS) if path.is_dir() else (path.parent, path)
    if path.is_file() and path.suffix != ".safetensors":
        raise AdapterError(
            f"LoRA adapter {path} is not a safetensors file; pixeldance never unpickles "
            "(convert it once with peft: PeftModel.from_pretrained(...).save_pretrained(...))"
        )
    if not weights.is_file():
        pickles = [n for n in PICKLE_NAMES if (folder / n).is_file()]
        if pickles:
            raise AdapterError(
                f"LoRA adapter {folder} holds only pickle weights ({pickles[0]}); pixeldance "
                "loads safetensors only (save it again with safe_serialization=True)"
            )
        raise AdapterError(f"LoRA adapter {folder} has no {ADAPTER_WEIGHTS}")
    config = folder / ADAPTER_CONFIG
    if not config.is_file():
        raise AdapterError(f"LoRA adapter {folder} has no {ADAPTER_CONFIG}")
    return config, weights


def load_adapter(
    model: nn.Module, path: str | Path, scale: float = 1.0, adapter_name: str | None = None
) -> str:
    """Add the saved adapter at ``path`` to ``model`` and activate it at ``scale`` beside the
    adapters loaded before; returns its name. Target modules the model lacks are refused."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_file, weights = adapter_files(path)
    try:
        values = json.loads(config_file.read_text())
        config = LoraConfig(**{k: v for k, v in values.items() if k in _LORA_FIELDS})
    except (ValueError, TypeError) as err:
        raise AdapterError(f"{config_file} is not a LoRA adapter config: {err}") from err
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise AdapterError(f"{weights} is damaged or not safetensors: {err}") from err
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in state.items()}
    modules = dict(model.named_modules())
    wanted = sorted({re.sub(r"\.lora_(A|B|embedding_A|embedding_B)\..*$", "", k) for k in state})
    if not wanted:
        raise AdapterError(f"{weights} holds no LoRA tensors")
    missing = [t for t in wanted if not _takes_lora(modules.get(t))]
    if missing:
        raise AdapterError(
            f"LoRA adapter {path} targets modules this UNet lacks: {', '.join(missing[:5])}"
            + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
            + "; it was made for another model"
        )
    _check_shapes(modules, state, weights)
    loaded = {n for _, m in lora_layers(model) for n in m.lora_A}
    name = adapter_name or f"adapter{len(loaded)}"
    if name in loaded:
        raise AdapterError(f"an adapter named {name!r} is loaded already")
    config.target_modules = wanted  # exactly the modules the weights name
    with warnings.catch_warnings():  # "multiple adapters": asked for
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, model, adapter_name=name)
    result = set_peft_model_state_dict(model, state, adapter_name=name)
    if result.unexpected_keys:
        raise AdapterError(
            f"{weights} holds tensors with no place in the model: {result.unexpected_keys[:3]}"
        )
    model.requires_grad_(False)
    for _, layer in lora_layers(model):
        if name in layer.lora_A:
            layer.set_scale(name, scale)
        layer.set_adapter(list(layer.lora_A.keys()))
    model.requires_grad_(False)
    return name


_LORA_FIELDS = {
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "bias",
    "use_rslora",
    "fan_in_fan_out",
    "init_lora_weights",
    "base_model_name_or_path",
    "rank_pattern",
    "alpha_pattern",
}


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every active adapter into its base weights and remove the LoRA wrappers: the model
    computes what it computed with them, as a plain model."""
    for name, layer in lora_layers(model):
        layer.merge(adapter_names=list(layer.active_adapters))
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    return model


def parse_lora_spec(spec: str) -> tuple[str, float]:
    """``PATH[:SCALE]`` -> (path, scale); the scale defaults to 1."""
    path, sep, tail = spec.rpartition(":")
    if sep and path:
        try:
            return path, float(tail)
        except ValueError:
            pass
    return spec, 1.0
