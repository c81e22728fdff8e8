"""Shared test helpers: tiny random components (built in the test, nothing downloaded) and
the ``pixeldance`` command run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from transformers import AutoTokenizer, BertConfig, BertModel

from pixeldance import PixelDancePipeline, PixelDanceUNet
from pixeldance.encoders import default_text_encoder_path, latent_channels

TEXT_DIM = 24
ROOT = Path(__file__).resolve().parents[1]


def tree(path: Path) -> list[str]:
    """Everything under ``path`` (files and folders), relative, sorted: to compare before and
    after a command that must leave a folder as it was."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def cli_env() -> dict:
    """The environment every test-started command runs in: unbuffered, one thread, and the
    source tree first on the path (for scripts run by file)."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m pixeldance.cli ARGS`` from the repository root; stdout and stderr apart."""
    return subprocess.run(
        [sys.executable, "-m", "pixeldance.cli", *args],
        env=cli_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_ok(*args: str, timeout: float = 600) -> str:
    """Run the command, assert it succeeded, return what it printed (stdout then stderr)."""
    result = cli(*args, timeout=timeout)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    return out


SMALL = dict(num_frames=3, height=16, width=24, num_inference_steps=4)  # a quick pipeline call


def random_image(seed=0, size=(40, 30)):
    """A random RGB uint8 image, ``size`` = (width, height)."""
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def tiny_text_encoder():
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(default_text_encoder_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=TEXT_DIM,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=80,
    )
    return BertModel(config).eval(), tokenizer


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    ).eval()


def tiny_unet(in_channels: int = 8, out_channels: int = 4) -> PixelDanceUNet:
    torch.manual_seed(0)
    return PixelDanceUNet(
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=2,
        norm_num_groups=8,
    ).eval()


def tiny_pipeline(vae=None, scheduler=None) -> PixelDancePipeline:
    text_encoder, tokenizer = tiny_text_encoder()
    vae = vae or tiny_vae()
    c = latent_channels(vae)
    return PixelDancePipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=tiny_unet(2 * c, c),
        scheduler=scheduler
        or DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    )
