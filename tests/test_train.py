"""Training: component setup, a tiny run, exact resume after SIGKILL, checkpoints, faults, 2 processes, SD start."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import cli_ok
from pixeldance import PixelDancePipeline
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.train.checkpoint import latest_checkpoint, list_checkpoints
from pixeldance.train.config import load_config
from pixeldance.train.loop import TrainingStopped, train
from train_runs import (
    TINY,
    assert_same_checkpoint,
    nan_losses_at,
    run_killed_after,
    run_ok,
    sets,
    train_cmd,
)

pytestmark = pytest.mark.slow  # training runs; the multi-process ones start several processes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_dataset(root, 6, seed=11, num_images=4, progress=False)
    return root


def tiny_config(shapes: Path, out: Path, *extra: str):
    return load_config(
        TINY,
        [
            f"data.manifest={shapes / 'manifest.csv'}",
            f"data.images={shapes / 'images.csv'}",
            f"run.output_dir={out}",
            *extra,
        ],
    )


def test_tiny_training_writes_a_pipeline_that_changed(shapes, tmp_path):
    cfg = tiny_config(
        shapes,
        tmp_path / "run",
        "optim.max_steps=4",
        "data.image_every=2",
        "run.sample_every=2",
        "run.sample_steps=2",
    )
    final = train(cfg)
    assert (tmp_path / "run" / "samples" / "step-00000002.mp4").exists()
    trained = PixelDancePipeline.from_pretrained(final)
    assert (tmp_path / "run" / "config.yaml").exists()
    assert list(Path(final, "unet").glob("*.safetensors"))
    assert not (final / "text_encoder").exists()  # the default text encoder comes from its package
    # it knows the clips it was trained on: 4 frames at 4 fps, one size per aspect
    made = trained.generation_config
    assert (made.num_frames, made.fps) == (4, 4.0)
    assert made.training_instruction_noise == cfg.instructions.noise_timestep
    wide = trained.generation_settings(aspect="16:9")
    assert (wide.height, wide.width) == (24, 40)
    from pixeldance.train.setup import build_components

    torch.manual_seed(cfg.run.seed)
    fresh = build_components(cfg).unet  # the same initialisation as the run started from
    kwargs = dict(num_frames=4, height=32, width=32, num_inference_steps=2, output_type="pt")
    trained.set_progress_bar_config(disable=True)
    a = trained("a red circle", generator=torch.Generator().manual_seed(0), **kwargs).frames
    untrained = PixelDancePipeline(**{**trained.components, "unet": fresh.eval()})
    untrained.set_progress_bar_config(disable=True)
    b = untrained("a red circle", generator=torch.Generator().manual_seed(0), **kwargs).frames
    assert (a - b).abs().max() > 1e-3


def test_resume_after_sigkill_is_bit_identical(shapes, tmp_path):
    """With image batches mixed in: killed right after checkpoint n (asserted: the run had not
    finished), resumed, it ends as the uninterrupted run does."""
    n = 4
    args = [
        *sets(f"data.images={shapes / 'images.csv'}", "data.image_every=4"),
        *sets("optim.warmup_steps=1"),
        *["--checkpoint-every", str(n), "--max-steps", str(2 * n)],
    ]
    a, b = tmp_path / "a", tmp_path / "b"
    run_ok(train_cmd(1, shapes, a, *args))
    assert run_killed_after(train_cmd(1, shapes, b, *args), b, n), "finished before the kill"
    assert not (b / f"checkpoint-{2 * n:08d}").exists()
    run_ok(train_cmd(1, shapes, b, *args, "--resume"))
    assert_same_checkpoint(a, b, 2 * n)


def test_half_written_checkpoint_is_never_resumed(tmp_path):
    good = tmp_path / "checkpoint-00000004"
    good.mkdir()
    (good / "COMPLETE").write_text("ok")
    (tmp_path / "checkpoint-00000008").mkdir()  # no marker: crashed while writing
    (tmp_path / ".tmp-checkpoint-00000012").mkdir()
    assert latest_checkpoint(tmp_path) == good
    assert list_checkpoints(tmp_path) == [good]


def test_nonfinite_loss_is_skipped_and_counted(shapes, tmp_path, monkeypatch):
    nan_losses_at(monkeypatch, [1])
    cfg = tiny_config(shapes, tmp_path / "nan", "optim.max_steps=4", "run.checkpoint_every=0")
    train(cfg)
    state = json.loads((latest_checkpoint(tmp_path / "nan") / "state.json").read_text())
    assert state["counters"]["nonfinite"] == 1 and state["step"] == 4


def test_nonfinite_in_a_row_stops_with_a_checkpoint(shapes, tmp_path, monkeypatch):
    nan_losses_at(monkeypatch, [2, 3, 4])
    cfg = tiny_config(shapes, tmp_path / "stop", "optim.max_steps=8", "run.max_nonfinite=3")
    with pytest.raises(TrainingStopped, match="3 non-finite losses in a row"):
        train(cfg)
    ckpt = latest_checkpoint(tmp_path / "stop")
    assert (
        ckpt is not None
        and json.loads((ckpt / "state.json").read_text())["counters"]["nonfinite"] == 3
    )


@pytest.mark.multiprocess
def test_two_processes_with_torchrun_see_different_data(shapes, tmp_path):
    args = ["--max-steps", "2", "--checkpoint-every", "0"]
    run_ok(train_cmd(2, shapes, tmp_path / "ddp", *args, *sets("run.log_batches=true", "data.image_every=0")), timeout=300)  # fmt: skip
    seen = []
    for rank in (0, 1):
        lines = (tmp_path / "ddp" / f"batches-rank{rank}.jsonl").read_text().splitlines()
        seen.append({c for line in lines for c in json.loads(line)["captions"]})
        assert len(lines) == 2
    assert seen[0] and seen[1] and seen[0] != seen[1]
    assert (tmp_path / "ddp" / "pipeline" / "model_index.json").exists()


def tiny_stable_diffusion(folder: Path) -> None:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=8,
    ).save_pretrained(folder / "unet")
    AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    ).save_pretrained(folder / "vae")
    # a character vocabulary with no merges: every character is a token
    import string

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16).save_pretrained(folder / "tokenizer")
    CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=4,
            max_position_embeddings=16,
        )
    ).save_pretrained(folder / "text_encoder")
    DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
    ).save_pretrained(folder / "scheduler")


def test_start_from_a_stable_diffusion_folder(shapes, tmp_path):
    sd = tmp_path / "sd"
    tiny_stable_diffusion(sd)
    cfg = tiny_config(
        shapes,
        tmp_path / "from-sd",
        "model.init=stable-diffusion",
        f"model.pretrained={sd}",
        "optim.max_steps=2",
        "data.image_every=2",
        "run.checkpoint_every=0",
    )
    final = train(cfg)
    pipe = PixelDancePipeline.from_pretrained(final)
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel"
    assert pipe.unet.config.in_channels == 8
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        "a dog", num_frames=3, height=16, width=24, num_inference_steps=2, output_type="np"
    ).frames
    assert out.shape == (1, 3, 16, 24, 3) and np.isfinite(out).all()


def test_latent_cache_preprocess_then_train(shapes, tmp_path):
    cli_ok(
        "preprocess",
        "--config",
        str(TINY),
        "--data",
        str(shapes / "manifest.csv"),
        "--images",
        str(shapes / "images.csv"),
        "--out",
        str(tmp_path / "cache"),
    )
    from pixeldance.data.latents import LatentCache

    videos, images = (
        LatentCache(tmp_path / "cache", "video"),
        LatentCache(tmp_path / "cache", "image"),
    )
    assert len(videos) == 6 and len(images) == 4
    sample = videos[(0, 0)]
    assert sample.latents.shape[:2] == (48, 4) and sample.text.shape == (16, 384)
    assert images[(0, 0)].latents.shape[1] == 1
    # the cache knows its autoencoder: another scaling factor rescales, other channels refuse
    assert videos.index["vae"] == {
        "class": "SpaceToDepthCodec",
        "latent_channels": 48,
        "scaling_factor": 1.0,
    }
    scaled = LatentCache(tmp_path / "cache", "video", scaling_factor=2.5, latent_channels=48)
    torch.testing.assert_close(scaled[(0, 0)].latents, 2.5 * sample.latents)
    with pytest.raises(ValueError, match="48-channel latents.*makes 12"):
        LatentCache(tmp_path / "cache", "video", latent_channels=12)
    cfg = load_config(
        TINY,
        [
            f"data.latent_cache={tmp_path / 'cache'}",
            f"run.output_dir={tmp_path / 'run'}",
            "optim.max_steps=3",
            "data.image_every=2",
            "run.checkpoint_every=0",
        ],
    )
    assert (train(cfg) / "model_index.json").exists()


def test_training_runs_through_broken_files(tmp_path):
    from test_data import make_broken_manifest

    manifest = make_broken_manifest(tmp_path / "data")
    cfg = load_config(
        TINY,
        [
            f"data.manifest={manifest}",
            f"run.output_dir={tmp_path / 'run'}",
            "optim.max_steps=4",
            "data.image_every=0",
            "run.checkpoint_every=0",
            "data.max_retries=2",
        ],
    )
    train(cfg)
    state = json.loads((latest_checkpoint(tmp_path / "run") / "state.json").read_text())
    assert state["counters"]["bad_files"] >= 1 and state["step"] == 4


@pytest.mark.parametrize("target", ["sample", "v_prediction"])
def test_input_skip_starts_as_instruction_copy_only_for_x0(target):
    """With x0 prediction a new UNet's input skip copies c_image to the output; with other
    targets (whose output is not the clean clip) it starts at zero."""
    from pixeldance.train.setup import build_components

    cfg = load_config(TINY, ["model.unet.input_skip=true", f"model.prediction_type={target}"])
    skip = build_components(cfg).unet.conv_skip
    c = skip.out_channels
    expected = torch.zeros_like(skip.weight)
    if target == "sample":
        expected[torch.arange(c), c + torch.arange(c)] = 1.0
    assert torch.equal(skip.weight, expected) and not skip.bias.any()


def test_continue_with_a_frame_embedding_and_motion_weighted_loss(shapes, tmp_path):
    """A continued run can gain a frame embedding (``model.unet.frame_embedding``) and train
    with the motion-weighted loss; a negative weight is refused before anything runs."""
    first = train(tiny_config(shapes, tmp_path / "a", "optim.max_steps=1"))
    more = [
        "model.init=pixeldance",
        f"model.pretrained={first}",
        "model.unet.frame_embedding=true",
        "optim.max_steps=2",
    ]
    with pytest.raises(ValueError, match="motion_loss_weight must be >= 0"):
        train(tiny_config(shapes, tmp_path / "bad", *more, "model.motion_loss_weight=-1"))
    assert not (tmp_path / "bad" / "pipeline").exists()
    final = train(tiny_config(shapes, tmp_path / "b", *more, "model.motion_loss_weight=4.0"))
    unet = PixelDancePipeline.from_pretrained(final).unet
    assert unet.config.frame_embedding is True
    assert unet.frame_embed.weight.abs().sum() > 0  # zero at the start, trained since


def test_all_bad_data_refuses_to_train_and_writes_nothing(tmp_path, capsys):
    """Every file broken: the run stops before saving anything, counts what was bad and points
    at check-data; the command exits 1 and no run folder appears."""
    from pixeldance.cli import main

    data = tmp_path / "data"
    data.mkdir()
    lines = ["path,caption"]
    for name in ("zero", "text", "missing"):
        if name == "zero":
            (data / "zero.mp4").write_bytes(b"")
        elif name == "text":
            (data / "text.mp4").write_text("this is not a video")
        lines.append(f"{name}.mp4,broken {name}")
    (data / "manifest.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    code = main(
        ["train", "--config", str(TINY), "--data", str(data / "manifest.csv"),
         "--output-dir", str(run), "--max-steps", "8", "--set", "data.image_every=0"]
    )  # fmt: skip
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1, last
    assert "no usable training sample" in last and "pixeldance check-data" in last
    assert not run.exists()


def test_a_run_whose_every_step_was_nonfinite_saves_nothing(shapes, tmp_path, monkeypatch):
    nan_losses_at(monkeypatch, [0, 1, 2])
    cfg = tiny_config(shapes, tmp_path / "nan", "optim.max_steps=3")
    with pytest.raises(TrainingStopped, match="every one of the 3 steps"):
        train(cfg)
    assert not (tmp_path / "nan").exists()
