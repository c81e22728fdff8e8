"""Mixed precision as users expect it: the modes YAML and --set give, bf16 outputs from every
block under bf16 autocast (videos and images), and what the loop refuses to run untested."""

import pytest
import torch

from helpers import tiny_unet
from pixeldance.models.layers import ResBlock, SpatialTransformer, TemporalAttention, TemporalConv
from pixeldance.train.config import load_config
from pixeldance.train.distributed import UnsupportedLaunch
from pixeldance.train.loop import train
from train_runs import TINY


@pytest.mark.parametrize(
    ("given", "mode"),
    [("no", "no"), ("false", "no"), ("null", "no"), ("bf16", "bf16"), ("FP16", "fp16")],
)
def test_mixed_precision_modes_from_set(given, mode):
    # YAML reads a bare `no` as false: it must still mean "no"
    assert load_config(TINY, [f"optim.mixed_precision={given}"]).optim.mixed_precision == mode


def test_mixed_precision_no_in_a_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  mixed_precision: no\n")
    assert load_config(path).optim.mixed_precision == "no"


@pytest.mark.parametrize("given", ["fp32", "true", "8"])
def test_unknown_mixed_precision_is_refused(given):
    with pytest.raises(ValueError, match="optim.mixed_precision must be one of no, fp16, bf16"):
        load_config(TINY, [f"optim.mixed_precision={given}"])


BLOCKS = (ResBlock, SpatialTransformer, TemporalConv, TemporalAttention)


@pytest.mark.parametrize("frames", [4, 1], ids=["video", "image"])
def test_every_block_returns_bf16_under_bf16_autocast(frames):
    unet = tiny_unet().train()
    seen: dict[str, torch.dtype] = {}
    for name, module in unet.named_modules():
        if isinstance(module, BLOCKS):
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = unet(torch.randn(1, 8, frames, 16, 16), 5, torch.randn(1, 3, 24)).sample
    kinds = {type(m).__name__ for n, m in unet.named_modules() if n in seen}
    expected = {"ResBlock", "SpatialTransformer"} | (
        {"TemporalConv", "TemporalAttention"} if frames > 1 else set()
    )
    assert kinds == expected  # every kind of block ran (temporal ones only for videos)
    assert {n for n, d in seen.items() if d != torch.bfloat16} == set()
    assert out.dtype == torch.bfloat16
    assert {p.dtype for p in unet.parameters()} == {torch.float32}  # master weights stay fp32


@pytest.mark.slow
def test_mixed_precision_no_from_set_trains(tmp_path):
    from pixeldance.data.shapes_dataset import write_dataset

    data = write_dataset(tmp_path / "data", 6, seed=11, progress=False)
    cfg = load_config(
        TINY,
        [
            "optim.mixed_precision=no",
            f"data.manifest={data / 'manifest.csv'}",
            f"run.output_dir={tmp_path / 'run'}",
            "optim.max_steps=1",
            "run.checkpoint_every=0",
        ],
    )
    assert (train(cfg) / "model_index.json").exists()
    assert "mixed_precision: 'no'" in (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, [], "DeepSpeed is not supported yet"),
        ({"ACCELERATE_USE_FSDP": "true"}, [], "Accelerate's FSDP plugin is not supported"),
        ({"WORLD_SIZE": "2"}, ["optim.fsdp=true", "optim.mixed_precision=fp16"], "fsdp with"),
        ({"WORLD_SIZE": "1"}, ["optim.fsdp=true"], "one process has nothing to shard"),
    ],
    ids=["deepspeed", "accelerate-fsdp", "fsdp-fp16", "fsdp-one-process"],
)
def test_untested_launches_are_refused_before_anything_runs(
    tmp_path, monkeypatch, env, overrides, message
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config(TINY, [f"run.output_dir={tmp_path / 'run'}", *overrides])
    with pytest.raises(UnsupportedLaunch, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_refusal_reaches_the_command_line(monkeypatch, capsys):
    from pixeldance.cli import main

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert main(["train", "--config", str(TINY)]) == 2
    assert "pixeldance train: error: DeepSpeed is not supported yet" in capsys.readouterr().err
