"""Tiny random extractors for the evaluation tests, built here (nothing downloaded): a video
network and an image classifier with the call signatures of the I3D and Inception TorchScript
files, and a CLIP model folder. No tests in this file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from pixeldance.encoders import default_text_encoder_path
from pixeldance.evaluation import FrameFeatures, TextImageFeatures, VideoFeatures
from pixeldance.evaluation.weights import sha256_of

VIDEO_DIM, IMAGE_DIM, CLASSES = 6, 5, 7


class TinyVideoNet(torch.nn.Module):
    """(B, 3, F, S, S) -> (B, VIDEO_DIM), called like the I3D file."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv3d(3, VIDEO_DIM, 3, stride=2)

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        if rescale:  # uint8-valued input, as the I3D file takes it with rescale=True
            x = x.float() / 127.5 - 1.0
        return torch.tanh(self.conv(x)).mean(dim=(2, 3, 4))


class TinyImageNet(torch.nn.Module):
    """(N, 3, S, S) -> features (N, IMAGE_DIM) or probabilities (N, CLASSES), called like the
    Inception file."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = torch.nn.Conv2d(3, IMAGE_DIM, 3, stride=2)
        self.head = torch.nn.Linear(IMAGE_DIM, CLASSES)

    def forward(
        self, x: torch.Tensor, return_features: bool = False, no_output_bias: bool = False
    ) -> torch.Tensor:
        f = torch.tanh(self.conv(x / 128.0 - 1.0)).mean(dim=(2, 3))
        if return_features:
            return f
        return torch.softmax(self.head(f) * 4, dim=-1)


def save_torchscript(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.script(module.eval()).save(str(path))
    return path


def tiny_video_features(size: int = 16, frames: int = 16) -> VideoFeatures:
    return VideoFeatures(
        TinyVideoNet().eval(),
        name="tiny video",
        checksum="test",
        frames=frames,
        size=size,
        call_kwargs=dict(rescale=False, resize=False, return_features=True),
    )


def tiny_frame_features(size: int = 16) -> FrameFeatures:
    return FrameFeatures(
        TinyImageNet().eval(),
        name="tiny image",
        checksum="test",
        size=size,
        feature_kwargs=dict(return_features=True),
        probability_kwargs=dict(no_output_bias=True),
    )


def save_tiny_clip(folder: Path) -> Path:
    """A CLIP model folder (config, model.safetensors, tokenizer, preprocessor_config.json)."""
    torch.manual_seed(3)
    tokenizer = AutoTokenizer.from_pretrained(default_text_encoder_path())
    config = CLIPConfig(
        text_config=dict(
            vocab_size=tokenizer.vocab_size,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            eos_token_id=tokenizer.sep_token_id,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=8,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text('{"crop_size": 32}')
    return folder


def tiny_text_image_features(folder: Path) -> TextImageFeatures:
    model = CLIPModel.from_pretrained(folder, use_safetensors=True).eval()
    return TextImageFeatures(
        model,
        AutoTokenizer.from_pretrained(folder),
        name="tiny clip",
        checksum=sha256_of(folder / "model.safetensors"),
        verified=None,
        size=32,
    )


def random_clip(frames: int = 16, h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, h, w, 3), dtype=np.uint8)


def save_tiny_stable_diffusion(folder: Path) -> Path:
    """A random Stable-Diffusion-layout text-to-image pipeline (UNet2DConditionModel,
    AutoencoderKL, CLIPTextModel, a tokenizer, DDIM), saved as safetensors."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(4)
    tokenizer = AutoTokenizer.from_pretrained(default_text_encoder_path(), model_max_length=16)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 8),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            eos_token_id=tokenizer.sep_token_id,
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


class TinyVideoClassifier(torch.nn.Module):
    """(B, 3, F, H, W) in [0, 255] -> class probabilities (B, CLASSES), called like
    StyleGAN-V's C3D TorchScript (plain call, its own resize)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv = torch.nn.Conv3d(3, CLASSES, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.conv(x / 128.0 - 1.0).mean(dim=(2, 3, 4)) * 6, dim=-1)


def save_tiny_c3d_safetensors(path: Path, classes: int = CLASSES) -> Path:
    """A C3D state dict with tiny widths (the real architecture's layer names and layout)."""
    from safetensors.torch import save_file

    from pixeldance.evaluation.c3d import C3D

    torch.manual_seed(6)
    model = C3D(widths=(2, 2, 2, 2, 2), hidden=8, classes=classes, flat=2 * 1 * 4 * 4)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"mean": "[90.0, 98.0, 102.0]"})  # fmt: skip
    return path


def save_tiny_clip_tokenizer(folder: Path) -> Path:
    """A byte-level CLIP tokenizer (vocab.json, merges.txt) with no merges: every byte a token."""
    import json

    # GPT-2's byte-to-character table (printable bytes stand for themselves)
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = [chr(b) for b in keep] + [chr(256 + i) for i in range(256 - len(keep))]
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars])}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "CLIPTokenizer"}')
    return folder


class Holder(torch.nn.Module):
    """A TorchScript-able node for a tree of named parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_torchscript_tree(tensors: dict, path: Path) -> Path:
    """A TorchScript archive whose modules hold ``tensors`` under their dotted names (the
    layout of OpenAI's CLIP files)."""
    root = Holder()
    for name, value in tensors.items():
        *parents, leaf = name.split(".")
        node = root
        for part in parents:
            if not hasattr(node, part):
                node.add_module(part, Holder())
            node = getattr(node, part)
        node.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
    return save_torchscript(root, path)
