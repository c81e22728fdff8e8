"""Nothing a user owns is deleted or overwritten: outputs are replaced only when they are
recognisably the project's own and the user asked (``--overwrite``), and a replacement is
swapped in only when complete. (Refusals of user folders for every command that takes an
output folder are rows of ``test_refusals.py``.)"""

import json
import shutil

import pytest

from helpers import tree
from pixeldance.cli import main
from pixeldance.folders import shipped_model_path
from pixeldance.owned import check_destination, replacing


def user_folder(path):
    path.mkdir()
    (path / "thesis.txt").write_text("years of work")
    (path / "sub").mkdir()
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return path


def test_export_refuses_a_folder_of_user_files_and_leaves_it_whole(tmp_path, capsys):
    mine = user_folder(tmp_path / "mywork")
    before = tree(mine)
    assert main(["export", str(shipped_model_path()), "--out", str(mine), "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert tree(mine) == before
    assert (mine / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mywork"]  # no temporary folder


def test_export_replaces_its_own_pipeline_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(shipped_model_path()), "--out", str(out)]) == 0
    (out / "generation.json").write_text(json.dumps({"tau": 3}))  # mark this copy
    assert main(["export", str(shipped_model_path()), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert json.loads((out / "generation.json").read_text()) == {"tau": 3}
    assert main(["export", str(shipped_model_path()), "--out", str(out), "--overwrite"]) == 0
    shipped = json.loads((shipped_model_path() / "generation.json").read_text())
    assert json.loads((out / "generation.json").read_text()) == shipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_an_interrupted_replacement_keeps_the_old_folder_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "pipe"
    shutil.copytree(shipped_model_path(), out)
    before = tree(out)
    with pytest.raises(KeyboardInterrupt), replacing(out) as tmp:
        (tmp / "half.txt").write_text("partial")
        raise KeyboardInterrupt
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_completed_replacement_swaps_in_the_new_folder(tmp_path):
    out = tmp_path / "pipe"
    shutil.copytree(shipped_model_path(), out)
    with replacing(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert tree(out) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


@pytest.mark.parametrize("kind", ["pipeline", "run", "dataset", "cache", "eval", "frames"])
def test_no_kind_recognises_a_folder_of_user_files(tmp_path, kind):
    mine = user_folder(tmp_path / "mine")
    with pytest.raises(ValueError, match="did not write"):
        check_destination(mine, kind, overwrite=True)
    with pytest.raises(ValueError, match="did not write"):
        check_destination(mine, kind, overwrite=True, add_to=True)


def test_new_and_empty_folders_are_fine_and_a_file_is_not(tmp_path):
    assert check_destination(tmp_path / "new", "pipeline", False) == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert check_destination(tmp_path / "empty", "run", False) == tmp_path / "empty"
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_destination(tmp_path / "f", "pipeline", True)


def test_a_symlink_loop_is_refused_in_one_line(tmp_path):
    loop = tmp_path / "ln"
    loop.symlink_to(loop)
    with pytest.raises(ValueError, match="symlink loop"):
        check_destination(loop, "pipeline", True)


def test_generate_replaces_an_existing_video_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"the user's video")
    args = ["generate", "--prompt", "a red circle moves up", "--steps", "2", "--out", str(out)]
    assert main(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"the user's video"
    assert main([*args, "--overwrite"]) == 0
    assert out.read_bytes() != b"the user's video"


def test_a_generation_that_turns_non_finite_stops_with_exit_1_and_no_file(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    argv = ["generate", "--prompt", "a red circle", "--steps", "3", "--guidance", "1e30"]
    assert main([*argv, "--guidance-interval", "0", "1000", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()  # the progress bar, then one line
    assert err[-1].startswith("pixeldance generate: error: the latents became NaN or infinite")
    assert "Traceback" not in "".join(err)
    assert list(tmp_path.iterdir()) == []


def test_a_model_with_nan_weights_writes_no_video(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    model = tmp_path / "nan-model"
    shutil.copytree(shipped_model_path(), model)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if k.endswith("conv_out.weight"))
    tensors[name] = tensors[name] * float("nan")
    save_file(tensors, weights)
    out = tmp_path / "clip.mp4"
    argv = ["generate", "--model", str(model), "--prompt", "x", "--steps", "2", "--out", str(out)]
    assert main(argv) == 1
    assert "NaN or infinite" in capsys.readouterr().err
    assert not out.exists()


def test_a_config_that_no_longer_fits_its_weights_is_named_in_one_line(tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(shipped_model_path(), model)
    config = json.loads((model / "unet" / "config.json").read_text())
    config["block_out_channels"] = [c + 16 for c in config["block_out_channels"]]
    (model / "unet" / "config.json").write_text(json.dumps(config))
    argv = ["generate", "--model", str(model), "--prompt", "x", "--out", str(tmp_path / "o.mp4")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the pipeline in {model} could not be loaded" in err[0], err
    assert "config.json" in err[0] and len(err[0]) < 400
    assert not (tmp_path / "o.mp4").exists()


def test_a_full_disk_is_found_before_the_work(tmp_path, monkeypatch, capsys):
    import shutil as shutil_module
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda _: usage(10**9, 10**9, 1000))
    loaded = []
    monkeypatch.setattr("pixeldance.cli.generate.load_pipeline", lambda *a: loaded.append(a))
    out = tmp_path / "frames"
    assert main(["generate", "--prompt", "a red circle", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not enough free space" in err[0] and "MB free" in err[0], err
    assert loaded == [] and list(tmp_path.iterdir()) == []
