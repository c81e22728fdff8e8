"""``pixeldance eval convert-weights``: the weights files people have, turned into what the
loaders take. Tensors are read with :mod:`.archive` (``torch.load(weights_only=True)``, or the
tensor records of a TorchScript archive), never by an unrestricted unpickle.

- ``openai-clip`` (OpenAI's ``ViT-B-32.pt``, a TorchScript archive) and ``open-clip`` (an
  open_clip checkpoint, a state dict with the same names) -> a transformers CLIP folder
  (``config.json``, ``model.safetensors``, the tokenizer copied from ``--tokenizer``,
  ``preprocessor_config.json``), what ``--clip`` takes;
- ``pytorch-fid-inception`` (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, a state
  dict) -> a safetensors file of the same tensors, what ``--inception`` takes (a safetensors
  Inception runs :class:`pixeldance.evaluation.inception.FIDInception`).

Outputs are written under a temporary name and renamed; an existing output is never replaced.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..files import atomic_path
from .archive import read_tensors

SOURCES = ("openai-clip", "open-clip", "pytorch-fid-inception")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's preprocessing (Radford et al. 2021)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_EOS = 49407  # CLIP's end-of-text token (the text embedding is read there), if not in vocab
# pytorch-fid's release file is pt_inception-2015-12-05-6726825d.pth: torch.hub checks that its
# SHA-256 starts with the 8 hex digits in the name, so they are the published checksum
PYTORCH_FID_SHA256_PREFIX = "6726825d"
TOKENIZER_FILES = (
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def _layers(t: dict, prefix: str) -> int:
    ids = {int(k[len(prefix) :].split(".")[0]) for k in t if k.startswith(prefix)}
    return max(ids) + 1 if ids else 0


def _tower(t: dict, src: str, dst: str, n: int) -> dict[str, torch.Tensor]:
    """One transformer of OpenAI layout (``{src}.resblocks.i``) in transformers' layout."""
    out = {}
    for i in range(n):
        a, b = f"{src}.resblocks.{i}", f"{dst}.encoder.layers.{i}"
        for part, (w, bias) in zip(
            ("q", "k", "v"),
            zip(
                t[f"{a}.attn.in_proj_weight"].chunk(3),
                t[f"{a}.attn.in_proj_bias"].chunk(3),
                strict=True,
            ),
            strict=True,
        ):
            out[f"{b}.self_attn.{part}_proj.weight"], out[f"{b}.self_attn.{part}_proj.bias"] = (
                w,
                bias,
            )
        pairs = {
            "attn.out_proj": "self_attn.out_proj",
            "ln_1": "layer_norm1",
            "ln_2": "layer_norm2",
            "mlp.c_fc": "mlp.fc1",
            "mlp.c_proj": "mlp.fc2",
        }
        for old, new in pairs.items():
            for kind in ("weight", "bias"):
                out[f"{b}.{new}.{kind}"] = t[f"{a}.{old}.{kind}"]
    return out


def clip_to_transformers(t: dict[str, torch.Tensor], activation: str) -> tuple[dict, dict]:
    """(transformers ``CLIPModel`` state dict, ``CLIPConfig`` kwargs) from the tensors of an
    OpenAI / open_clip ViT CLIP (``visual.*``, ``transformer.*``, ``token_embedding`` ...)."""
    try:
        width, _, patch, _ = t["visual.conv1.weight"].shape
        grid = int(round((t["visual.positional_embedding"].shape[0] - 1) ** 0.5))
        text_width = t["ln_final.weight"].shape[0]
        embed_dim = t["text_projection"].shape[1]
    except KeyError as err:
        raise ValueError(
            f"not a ViT CLIP checkpoint (no tensor {err.args[0]}); ResNet CLIPs are not supported"
        ) from err
    nv, nt = _layers(t, "visual.transformer.resblocks."), _layers(t, "transformer.resblocks.")
    sd = {
        "vision_model.embeddings.class_embedding": t["visual.class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": t["visual.conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": t["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": t["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": t["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": t["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": t["visual.ln_post.bias"],
        "visual_projection.weight": t["visual.proj"].T,
        "text_model.embeddings.token_embedding.weight": t["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": t["positional_embedding"],
        "text_model.final_layer_norm.weight": t["ln_final.weight"],
        "text_model.final_layer_norm.bias": t["ln_final.bias"],
        "text_projection.weight": t["text_projection"].T,
        "logit_scale": t["logit_scale"].reshape(()),
        **_tower(t, "visual.transformer", "vision_model", nv),
        **_tower(t, "transformer", "text_model", nt),
    }
    config = dict(
        projection_dim=embed_dim,
        text_config=dict(
            vocab_size=t["token_embedding.weight"].shape[0],
            hidden_size=text_width,
            intermediate_size=t["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            num_hidden_layers=nt,
            num_attention_heads=max(1, text_width // 64),  # CLIP's heads are 64 wide
            max_position_embeddings=t["positional_embedding"].shape[0],
            hidden_act=activation,
            eos_token_id=CLIP_EOS,
        ),
        vision_config=dict(
            hidden_size=width,
            intermediate_size=t["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            num_hidden_layers=nv,
            num_attention_heads=max(1, width // 64),
            image_size=patch * grid,
            patch_size=patch,
            hidden_act=activation,
        ),
    )
    return {k: v.float().contiguous() for k, v in sd.items()}, config


def _new_output(out: Path) -> None:
    if out.exists():
        raise FileExistsError(f"{out} exists; convert-weights never replaces a file or folder")


def convert_clip(
    source: str | Path,
    out: str | Path,
    tokenizer: str | Path,
    activation: str = "quick_gelu",
    heads: tuple[int, int] | None = None,
) -> Path:
    """An OpenAI / open_clip ViT checkpoint -> a transformers CLIP folder at ``out``.
    ``activation``: OpenAI's models use QuickGELU, most open_clip ones GELU (``gelu``);
    ``heads``: (vision, text) attention heads if not 64 wide."""
    from transformers import CLIPConfig, CLIPModel

    out, tokenizer = Path(out), Path(tokenizer)
    _new_output(out)
    missing = [f for f in ("vocab.json", "merges.txt") if not (tokenizer / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"--tokenizer {tokenizer}: no {', '.join(missing)} (give a CLIP tokenizer folder; "
            "the BPE vocabulary is the same for every OpenAI-vocabulary CLIP)"
        )
    sd, config = clip_to_transformers(read_tensors(source), activation)
    vocab = json.loads((tokenizer / "vocab.json").read_text())
    config["text_config"]["eos_token_id"] = vocab.get("<|endoftext|>", CLIP_EOS)
    config["text_config"]["bos_token_id"] = vocab.get("<|startoftext|>", CLIP_EOS - 1)
    if heads:
        config["vision_config"]["num_attention_heads"] = heads[0]
        config["text_config"]["num_attention_heads"] = heads[1]
    model = CLIPModel(CLIPConfig(**config))
    problems = model.load_state_dict(sd, strict=False)
    unexpected = list(problems.unexpected_keys)
    absent = [k for k in problems.missing_keys if not k.endswith("position_ids")]
    if unexpected or absent:
        raise ValueError(f"{source}: tensors do not fit CLIP ({(unexpected + absent)[:3]})")
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval().save_pretrained(tmp, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (tokenizer / name).is_file():
            shutil.copy(tokenizer / name, tmp / name)
    size = config["vision_config"]["image_size"]
    pre = {"crop_size": size, "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD)}
    (tmp / "preprocessor_config.json").write_text(json.dumps(pre, indent=1))
    tmp.rename(out)
    return out


def convert_inception(source: str | Path, out: str | Path) -> Path:
    """pytorch-fid's Inception state dict -> the same tensors as safetensors at ``out``."""
    from safetensors.torch import save_file

    from .inception import FIDInception

    out = Path(out)
    _new_output(out)
    tensors = read_tensors(source)
    FIDInception.from_tensors(tensors)  # refuse a file that is not this network
    from .weights import sha256_of

    digest = sha256_of(source)
    meta = {
        "format": "pytorch-fid-inception",
        "source": Path(source).name,
        "source_sha256": digest,
        # the published file's name carries the start of its SHA-256 (torch.hub's check)
        "source_is_published_file": str(digest.startswith(PYTORCH_FID_SHA256_PREFIX)).lower(),
    }
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    return out


def convert(kind: str, source: str | Path, out: str | Path, **kwargs) -> Path:
    if kind not in SOURCES:
        raise ValueError(f"--from must be one of {', '.join(SOURCES)}")
    if not Path(source).is_file():
        raise FileNotFoundError(f"--input {source}: no such file")
    if kind == "pytorch-fid-inception":
        return convert_inception(source, out)
    default = "quick_gelu" if kind == "openai-clip" else "gelu"
    activation = kwargs.pop("activation", None) or default
    return convert_clip(source, out, activation=activation, **kwargs)
