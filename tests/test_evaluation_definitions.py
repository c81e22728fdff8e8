"""The metric definitions against independent implementations written here (numpy, scipy)
or scikit-image's: per-frame PSNR, valid-region SSIM on 48 px clips, and the Inception Score
of class-sorted inputs with shuffled splits."""

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from pixeldance.evaluation import metrics as M


def _clip_pair(seed: int = 0, size: int = 48, frames: int = 4):
    rng = np.random.default_rng(seed)
    # smooth content (a real picture's statistics) plus noise on the second clip
    base = rng.integers(0, 256, (frames, size // 8, size // 8, 3)).astype(np.float64)
    a = np.kron(base, np.ones((1, 8, 8, 1))) + rng.normal(0, 6, (frames, size, size, 3))
    b = a + rng.normal(0, 20, a.shape) + np.arange(frames)[:, None, None, None] * 4
    return (np.clip(a, 0, 255).astype(np.uint8), np.clip(b, 0, 255).astype(np.uint8))


def test_video_psnr_is_the_mean_of_per_frame_psnr_not_the_whole_clip_mse():
    a, b = _clip_pair()
    diff = a.astype(np.float64) - b.astype(np.float64)
    per_frame = [10 * np.log10(255.0**2 / np.mean(d**2)) for d in diff]
    assert M.video_psnr(a, b) == pytest.approx(float(np.mean(per_frame)), rel=1e-12)
    whole = 10 * np.log10(255.0**2 / np.mean(diff**2))
    assert M.psnr(a, b) == pytest.approx(whole, rel=1e-12)
    # frames of unequal error: the two definitions differ (Jensen), the per-frame mean higher
    b2 = b.copy()
    b2[0] = a[0]  # one perfect frame
    assert M.video_psnr(a, b2) > M.psnr(a, b2) + 3


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_scikit_image_on_48_px_clips(seed):
    a, b = _clip_pair(seed)
    expected = np.mean(
        [
            structural_similarity(
                x,
                y,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=255,
                channel_axis=-1,
            )
            for x, y in zip(a, b, strict=True)
        ]
    )
    got = M.ssim(a, b)
    assert abs(got - expected) < 1e-4
    assert 0.05 < got < 0.95  # a real comparison, not two identical or unrelated clips


def test_ssim_refuses_frames_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        M.ssim(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))


def _is_numpy(p: np.ndarray, splits: int) -> list[float]:
    """Inception Score of each consecutive split, written out with plain numpy."""
    out = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0)
        out.append(math.exp(terms.sum(axis=1).mean()))
    return out


def test_inception_score_shuffles_class_sorted_inputs_with_its_seed():
    rng = np.random.default_rng(0)
    k, per_class, splits = 20, 30, 10
    labels = np.repeat(np.arange(k), per_class)  # sorted by class, as UCF-101 files are
    logits = rng.normal(0, 1, (len(labels), k))
    logits[np.arange(len(labels)), labels] += 5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    in_order, _ = M.inception_score(probs, splits, seed=None)
    assert in_order == pytest.approx(np.mean(_is_numpy(probs, splits)), rel=1e-12)
    mean, std = M.inception_score(probs, splits, seed=7)
    shuffled = probs[np.random.default_rng(7).permutation(len(probs))]
    independent = _is_numpy(shuffled, splits)
    assert mean == pytest.approx(np.mean(independent), rel=1e-12)
    assert std == pytest.approx(np.std(independent), rel=1e-9)
    # each in-order split sees 2 of 20 classes; shuffled splits see most of them
    assert mean > 2.5 * in_order
    assert M.inception_score(probs, splits, seed=7) == (mean, std)  # the seed reproduces
