"""Fine-tuning: a run started from a pipeline folder (another bucket set), temporal-only and
LoRA training that move only what they train, adapters saved alone and applied at generation
(pipe.load_lora, generate --lora, export --merge), and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from pixeldance import PixelDancePipeline
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.models.lora import AdapterError
from pixeldance.train.config import load_config
from pixeldance.train.loop import train
from train_runs import TINY

# the base model trains on the square bucket alone; fine-tuning uses another bucket set
BASE = ("data.buckets=[{name: square, height: 32, width: 32, frames: 4, batch_size: 2}]",)
OTHER = (
    "data.buckets=[{name: wide, height: 24, width: 40, frames: 6, batch_size: 2}, "
    "{name: tall, height: 40, width: 24, frames: 3, batch_size: 1}]",
)


def cli(*args: str):
    """``pixeldance ARGS`` in this process (as the command line runs it): (code, stderr)."""
    import contextlib
    import io

    from pixeldance.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, err.getvalue()


def cli_ok(*args: str) -> None:
    code, err = cli(*args)
    assert code == 0, err[-3000:]


def _train(data: Path, out: Path, *overrides: str, steps: int = 3) -> Path:
    cfg = load_config(
        TINY,
        [
            f"data.manifest={data / 'manifest.csv'}",
            f"run.output_dir={out}",
            f"optim.max_steps={steps}",
            "run.checkpoint_every=0",
            "data.image_every=0",
            "optim.warmup_steps=0",
            *overrides,
        ],
    )
    return train(cfg)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_dataset(root, 6, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def base(data, tmp_path_factory) -> Path:
    """A tiny trained pipeline folder (2 steps), with measured-looking generation settings."""
    folder = _train(data, tmp_path_factory.mktemp("base") / "run", *BASE, steps=2)
    settings = json.loads((folder / "generation.json").read_text())
    (folder / "generation.json").write_text(json.dumps({**settings, "guidance_scale": 7.5}))
    return folder


@pytest.fixture(scope="module")
def runs(data, base, tmp_path_factory) -> dict[str, Path]:
    """temporal and lora runs of 3 steps from ``base`` on another bucket set."""
    root = tmp_path_factory.mktemp("finetune")
    start = ("model.init=pipeline", f"model.pretrained={base}", *OTHER, "optim.lr=0.01")
    return {
        mode: _train(
            data, root / mode, *start, f"optim.trainable={mode}", "optim.lora.rank=4"
        ).parent
        for mode in ("temporal", "lora")
    }


def _last_checkpoint(run: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(sorted(run.glob("checkpoint-*"))[-1] / f"{name}.safetensors")


def _base_unet(base: Path) -> dict[str, torch.Tensor]:
    return load_file(base / "unet" / "diffusion_pytorch_model.safetensors")


def _state_names(optimizer: dict) -> set[str]:
    return {k.removeprefix("state.").rsplit(".", 1)[0] for k in optimizer}


def test_temporal_run_moves_only_temporal_layers(base, runs):
    """Every 2D tensor and the z_t half of conv_in are bit-identical after training; the
    temporal layers and c_image's half of conv_in moved; optimizer state and EMA hold only
    trainable tensors."""
    before, after = _base_unet(base), _last_checkpoint(runs["temporal"], "unet")
    assert before.keys() == after.keys()
    temporal = {k for k in after if ".temp_conv" in k or ".temp_attentions." in k}
    trainable = temporal | {"conv_in.weight", "conv_skip.weight", "conv_skip.bias"} & set(after)
    frozen = set(after) - trainable
    assert len(frozen) > 50 and len(temporal) > 10
    assert [k for k in frozen if not torch.equal(before[k], after[k])] == []
    c = after["conv_out.weight"].shape[0]  # latent channels: conv_in takes [z_t, c_image]
    assert torch.equal(before["conv_in.weight"][:, :c], after["conv_in.weight"][:, :c])
    assert not torch.equal(before["conv_in.weight"][:, c:], after["conv_in.weight"][:, c:])
    moved = [k for k in temporal if not torch.equal(before[k], after[k])]
    assert len(moved) > len(temporal) // 2, moved
    assert _state_names(_last_checkpoint(runs["temporal"], "optimizer")) == trainable
    assert set(_last_checkpoint(runs["temporal"], "ema")) == trainable


def test_lora_run_moves_only_adapters(base, runs):
    """Every base weight (under peft's ``base_layer``) is bit-identical; only LoRA tensors
    have optimizer state and EMA; the result is the adapter alone, in peft's format."""
    before, after = _base_unet(base), _last_checkpoint(runs["lora"], "unet")
    lora = {k for k in after if ".lora_" in k}
    plain = {k.replace(".base_layer.", "."): k for k in after if k not in lora}
    assert plain.keys() == before.keys()
    assert [k for k, v in plain.items() if not torch.equal(before[k], after[v])] == []
    assert lora and [k for k in lora if "lora_B" in k and after[k].abs().sum() > 0]
    assert _state_names(_last_checkpoint(runs["lora"], "optimizer")) == lora
    assert set(_last_checkpoint(runs["lora"], "ema")) == lora
    adapter = runs["lora"] / "adapter"
    assert sorted(p.name for p in adapter.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["peft_type"] == "LORA"
    assert config["base_model_name_or_path"] == str(base.resolve())
    keys = load_file(adapter / "adapter_model.safetensors").keys()
    assert all(k.startswith("base_model.model.") and ".lora_" in k for k in keys)
    assert not (runs["lora"] / "pipeline").exists()


def test_temporal_run_from_a_pipeline_keeps_its_settings(runs):
    """The result carries the source's generation.json (its guidance) with the new run's
    frame count and sizes, and the packaged text encoder stays packaged."""
    folder = runs["temporal"] / "pipeline"
    settings = json.loads((folder / "generation.json").read_text())
    assert settings["guidance_scale"] == 7.5
    assert settings["num_frames"] == 6
    assert settings["sizes"] == {"16:9": [24, 40], "9:16": [40, 24]}
    assert (folder / "text_encoder_from_package.json").exists()
    assert not (folder / "text_encoder").exists()


def _video(pipe, seed=0):
    return pipe(
        "a red circle moves to the right",
        num_frames=4,
        height=32,
        width=32,
        num_inference_steps=3,
        output_type="latent",
        generator=torch.Generator().manual_seed(seed),
    ).frames


def test_base_plus_adapter_equals_merged_export(base, runs, tmp_path):
    """base + adapter (pipe.load_lora) and the merged export give the same latents within
    1e-4 (float32; the merge folds B @ A into the weights, a reordering of the same sums);
    scale 0 gives the base's exactly; the adapter moves the output."""
    adapter = runs["lora"] / "adapter"
    merged = tmp_path / "merged"
    cli_ok("export", str(base), "--merge", str(adapter), "--out", str(merged), "--full-precision")
    plain = _video(PixelDancePipeline.from_pretrained(base))
    with_adapter = PixelDancePipeline.from_pretrained(base)
    assert with_adapter.load_lora(adapter) == "adapter0"
    x, y = _video(with_adapter), _video(PixelDancePipeline.from_pretrained(merged))
    assert (x - y).abs().max() < 1e-4
    assert (x - plain).abs().max() > 1e-3  # the adapter does something
    off = PixelDancePipeline.from_pretrained(base)
    off.load_lora(adapter, scale=0.0)
    assert torch.equal(_video(off), plain)
    # two adapters at 0.5 each: the adapter at 1
    halves = PixelDancePipeline.from_pretrained(base)
    halves.load_lora(adapter, 0.5)
    halves.load_lora(str(adapter / "adapter_model.safetensors"), 0.5)
    assert (_video(halves) - x).abs().max() < 1e-4


def _frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_generate_with_lora_flag_matches_the_merged_model(base, runs, tmp_path):
    adapter = runs["lora"] / "adapter"
    merged = tmp_path / "merged"
    cli_ok("export", str(base), "--merge", f"{adapter}:0.7", "--out", str(merged))
    args = ["--prompt", "a red circle", "--steps", "3", "--frames", "4", "--seed", "1"]
    cli_ok("generate", *args, "--model", str(base), "--lora", f"{adapter}:0.7", "--out",
           str(tmp_path / "a"))  # fmt: skip
    cli_ok("generate", *args, "--model", str(merged), "--out", str(tmp_path / "b"))
    cli_ok("generate", *args, "--model", str(base), "--out", str(tmp_path / "c"))
    a, b, c = (_frames(tmp_path / n).astype(int) for n in "abc")
    # the export stores the merged UNet in float16: frames within 2 levels of 255
    assert a.shape == b.shape and np.abs(a - b).max() <= 2
    assert np.abs(a - c).max() > 2


def test_refusals_name_the_adapter_problem(base, runs, tmp_path):
    """A missing adapter, a pickle one and one made for another UNet: exit 2, one line,
    nothing written."""
    adapter = runs["lora"] / "adapter"
    pickle = tmp_path / "pickled"
    pickle.mkdir()
    shutil.copy(adapter / "adapter_config.json", pickle)
    (pickle / "adapter_model.bin").write_bytes(b"\x80\x04not really")
    other = tmp_path / "other"
    shutil.copytree(adapter, other)
    tensors = load_file(other / "adapter_model.safetensors")
    renamed = {k.replace("down_blocks.1.", "down_blocks.7."): v for k, v in tensors.items()}
    save_file(renamed, other / "adapter_model.safetensors")
    out = tmp_path / "video.mp4"
    cases = {
        str(tmp_path / "nowhere"): "LoRA adapter not found",
        str(pickle): "holds only pickle weights (adapter_model.bin)",
        str(other): "targets modules this UNet lacks: down_blocks.7.",
        # the tiny adapter on the shipped model: same module names, other widths
        str(adapter): "the adapter was made for another model",
    }
    for spec, said in cases.items():
        model = [] if spec == str(adapter) else ["--model", str(base)]
        code, err = cli("generate", "--prompt", "x", *model, "--lora", spec, "--out", str(out))
        assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    with pytest.raises(AdapterError, match="targets modules this UNet lacks"):
        PixelDancePipeline.from_pretrained(base).load_lora(other)
    code, err = cli("export", str(base), "--merge", str(pickle), "--out", str(tmp_path / "m"))
    assert code == 2 and "pickle" in err
    assert not (tmp_path / "m").exists()


def test_incompatible_layout_and_bad_settings_are_refused(data, base, tmp_path):
    """A pipeline whose autoencoder gives latents its UNet cannot take, bucket sizes off its
    size multiple, an unknown trainable mode and a LoRA pattern that matches nothing: each is
    refused in one line (exit 2) before a run folder exists."""
    odd = tmp_path / "odd"
    shutil.copytree(base, odd)
    vae = json.loads((odd / "vae" / "config.json").read_text())
    (odd / "vae" / "config.json").write_text(json.dumps({**vae, "patch_size": 2}))
    out = tmp_path / "run"
    start = ["--set", "model.init=pipeline", "--set", f"model.pretrained={odd}"]
    common = ["train", "--config", str(TINY), "--data", str(data / "manifest.csv")]
    cases = [
        (start, "its UNet takes 96 input and 48 output channels but its autoencoder makes "
         "12-channel latents"),
        (["--set", "model.init=pipeline", "--set", f"model.pretrained={base}", "--set",
          "data.buckets=[{name: odd, height: 36, width: 36, frames: 4, batch_size: 1}]"],
         "data.buckets[0].height is 36: it must be a multiple of 8"),
        (["--set", "optim.trainable=spatial"], "optim.trainable must be one of all, temporal, lora"),
        (["--set", "optim.trainable=lora", "--set", "optim.lora.targets=['.*\\.to_nothing']"],
         "matches no module of the UNet"),
    ]  # fmt: skip
    for args, said in cases:
        code, err = cli(*common, "--output-dir", str(out), *args)
        assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
