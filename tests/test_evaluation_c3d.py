"""The video Inception Score (C3D on UCF-101, TGANv2's protocol): a tiny C3D state dict and a
tiny TorchScript classifier built here, the network checked against functional ops written
here, the score against numpy, the TorchScript refused unless trusted."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from evaluation_helpers import (
    TinyVideoClassifier,
    random_clip,
    save_tiny_c3d_safetensors,
    save_torchscript,
)
from pixeldance.cli import main
from pixeldance.evaluation.weights import WeightsChecksumError, load_c3d, sha256_of
from pixeldance.files import write_mp4


def _c3d_by_hand(t: dict, clip: np.ndarray, mean) -> np.ndarray:
    """C3D logits from the tensors with functional ops: crop, resize 112, mean, 8 convs."""
    x = torch.from_numpy(clip[:16]).permute(0, 3, 1, 2).float()  # (F, 3, H, W)
    s = min(x.shape[-2:])
    top, left = (x.shape[-2] - s) // 2, (x.shape[-1] - s) // 2
    x = F.interpolate(x[..., top : top + s, left : left + s], size=(112, 112), mode="bilinear")
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)).permute(1, 0, 2, 3)[None]
    pools = {"conv1a": (1, 2, 2), "conv2a": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2)}
    for n in ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b"):
        x = F.relu(F.conv3d(x, t[f"{n}.weight"], t[f"{n}.bias"], padding=1))
        if n in pools:
            x = F.max_pool3d(x, pools[n])
    x = F.max_pool3d(x, 2, padding=(0, 1, 1)).flatten(1)
    for n in ("fc6", "fc7"):
        x = F.relu(F.linear(x, t[f"{n}.weight"], t[f"{n}.bias"]))
    return F.linear(x, t["fc8.weight"], t["fc8.bias"]).numpy()


def test_safetensors_c3d_matches_functional_ops_and_softmaxes_its_logits(tmp_path):
    path = save_tiny_c3d_safetensors(tmp_path / "c3d.safetensors")
    extractor = load_c3d(path)
    clips = [random_clip(16, 40, 56, seed=s) for s in range(3)]
    probs = extractor.probabilities(clips)
    logits = np.concatenate([_c3d_by_hand(load_file(path), c, [90, 98, 102]) for c in clips])
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)
    p = extractor.protocol()
    assert p["output"] == "logits: softmax applied here" and "112x112" in p["preprocess"]
    assert p["sha256"] == sha256_of(path) and p["checksum_verified"] is None


def test_a_c3d_torchscript_is_refused_unless_trusted(tmp_path):
    path = save_torchscript(TinyVideoClassifier(), tmp_path / "c3d_ucf101.pt")
    with pytest.raises(WeightsChecksumError, match="--trust-weights"):
        load_c3d(path)
    extractor = load_c3d(path, trust=True)
    probs = extractor.probabilities([random_clip(16, 24, 32)])
    assert probs.shape == (1, 7) and extractor.protocol()["checksum_verified"] is None
    assert "network's own" in extractor.protocol()["preprocess"]


def _is_numpy(p: np.ndarray, splits: int) -> float:
    scores = []
    for part in np.array_split(p, splits):
        kl = (part * (np.log(part) - np.log(part.mean(axis=0)))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores))


def test_eval_video_is_is_the_inception_score_of_the_c3d_probabilities(tmp_path, capsys):
    folder = tmp_path / "videos"
    clips = [random_clip(16, 40, 40, seed=s) for s in range(6)]
    for i, c in enumerate(clips):
        write_mp4(c, folder / f"{i}.mp4", fps=8)
    path = save_tiny_c3d_safetensors(tmp_path / "c3d.safetensors")
    out = tmp_path / "r"
    rc = main([
        "eval", "--videos", str(folder), "--metrics", "video_is", "--c3d", str(path),
        "--is-splits", "2", "--is-seed", "3", "--device", "cpu", "--out", str(out),
    ])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    from pixeldance.evaluation.inputs import read_clip

    decoded = [read_clip(folder / f"{i}.mp4", 16) for i in range(6)]  # as written (H.264)
    probs = load_c3d(path).probabilities(decoded)
    shuffled = probs[np.random.default_rng(3).permutation(6)]
    assert report["scores"]["video_is"]["value"] == pytest.approx(_is_numpy(shuffled, 2), rel=1e-5)
    assert report["scores"]["video_is"]["protocol"]["unit"].startswith("clips")
