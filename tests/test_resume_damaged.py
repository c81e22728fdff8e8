"""A damaged checkpoint is named before anything is built, with the newest intact earlier one,
and ``--resume PATH`` continues from a checkpoint chosen by hand."""

from pathlib import Path

import pytest

from pixeldance.cli import main
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.train.checkpoint import checkpoint_meta, list_checkpoints
from train_runs import TINY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("damaged")
    write_dataset(root / "shapes", 4, seed=3, num_images=0, progress=False)
    argv = ["train", "--config", str(TINY), "--data", str(root / "shapes" / "manifest.csv"),
            "--output-dir", str(root / "run"), "--checkpoint-every", "2",
            "--set", "data.image_every=0"]  # fmt: skip
    assert main([*argv, "--max-steps", "4"]) == 0
    assert [checkpoint_meta(c)["step"] for c in list_checkpoints(root / "run")] == [2, 4]
    return root / "run", argv


def damage(checkpoint: Path, name: str) -> bytes:
    path = checkpoint / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if name.endswith(".safetensors") else b"{oops")
    return data


@pytest.mark.parametrize("name", ["unet.safetensors", "optimizer.safetensors", "state.json"])
def test_a_damaged_newest_checkpoint_is_named_with_the_intact_earlier_one(run, name, capsys):
    folder, argv = run
    first, newest = list_checkpoints(folder)
    kept = damage(newest, name)
    try:
        assert main([*argv, "--max-steps", "6", "--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert str(newest / name) in err[0]
        assert f"--resume {first}" in err[0]
        assert [c.name for c in list_checkpoints(folder)] == [first.name, newest.name]
    finally:
        (newest / name).write_bytes(kept)


def test_resume_from_a_named_checkpoint(run, caplog):
    folder, argv = run
    first, _ = list_checkpoints(folder)
    with caplog.at_level("INFO"):
        assert main([*argv, "--max-steps", "6", "--resume", str(first)]) == 0
    assert f"resumed from {first} at step 2" in caplog.text
    assert checkpoint_meta(list_checkpoints(folder)[-1])["step"] == 6
