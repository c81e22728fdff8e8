"""Metric math (pure functions): Frechet distance, Inception Score, CLIPSIM, PSNR, SSIM,
flicker and instruction fidelity, against closed forms."""

import math
import warnings

import numpy as np
import pytest

from pixeldance.evaluation import metrics as M


def _features(n=400, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d))  # correlated features


# ---------------------------------------------------------------- Frechet distance
def test_frechet_distance_of_identical_sets_is_zero():
    x = _features()
    assert M.frechet_distance_from_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_a_mean_shift_d_gives_its_squared_norm():
    x = _features()
    d = np.array([1.0, -2.0, 0.5, 0.0, 3.0, -1.0])
    assert M.frechet_distance_from_features(x, x + d) == pytest.approx(d @ d, rel=1e-8)


def test_diagonal_covariances_match_the_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    got = M.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_is_symmetric():
    a, b = _features(seed=2), _features(seed=3) + 0.3
    ab, ba = M.frechet_distance_from_features(a, b), M.frechet_distance_from_features(b, a)
    assert ab > 0.1 and ab == pytest.approx(ba, rel=1e-8)


def test_warns_when_samples_do_not_exceed_the_dimension():
    with pytest.warns(M.SmallSampleWarning, match="6 samples of 6-dimensional"):
        M.feature_statistics(_features(n=6, d=6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.feature_statistics(_features(n=7, d=6))  # no warning above the dimension


def test_running_statistics_equal_those_of_the_stacked_batches():
    x = _features(n=300) + 50.0  # a large mean: the shifted sums keep the covariance exact
    running = M.RunningStatistics()
    for part in np.array_split(x, 7):
        running.add(part)
    mu, sigma = running.statistics()
    ref_mu, ref_sigma = M.feature_statistics(x)
    assert running.count == 300
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-12)
    np.testing.assert_allclose(sigma, ref_sigma, rtol=1e-9, atol=1e-9)
    with pytest.warns(M.SmallSampleWarning):
        small = M.RunningStatistics()
        small.add(x[:3])
        small.statistics()


def test_frechet_distance_rejects_mismatched_statistics():
    with pytest.raises(ValueError, match="differ in shape"):
        M.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ---------------------------------------------------------------- inception score
def test_inception_score_of_a_uniform_predictor_is_one():
    probs = np.full((100, 10), 0.1)
    mean, std = M.inception_score(probs, splits=5)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("splits", [1, 4])
def test_confident_balanced_predictions_score_the_class_count(splits):
    k = 7
    probs = np.eye(k)[np.arange(k * 3 * splits) % k]  # one-hot, every class equally often
    mean, _ = M.inception_score(probs, splits=splits, seed=None)  # splits balanced in order
    assert mean == pytest.approx(k)


def test_inception_score_rejects_rows_that_are_not_distributions():
    with pytest.raises(ValueError, match="probability distribution"):
        M.inception_score(np.ones((10, 3)), splits=1)


# ---------------------------------------------------------------- CLIPSIM
def test_clipsim_is_the_mean_over_frames_of_cosine_similarity():
    text = np.array([1.0, 0.0])
    frames = np.array([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]])  # cos 1, 0, 1/sqrt(2)
    assert M.clipsim(frames, text) == pytest.approx((1 + 0 + 1 / math.sqrt(2)) / 3)
    assert M.clipsim(frames * 3, text * 0.1) == pytest.approx(M.clipsim(frames, text))


# ---------------------------------------------------------------- PSNR, SSIM, flicker
def test_psnr_of_known_error_and_of_identical_frames():
    a = np.zeros((8, 8, 3), np.uint8)
    assert M.psnr(a, a) == M.PSNR_CAP_DB
    assert M.psnr(a, a + 1) == pytest.approx(10 * math.log10(255**2))


def test_ssim_is_one_for_identical_frames_lower_with_noise_and_symmetric():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
    noisy = np.clip(a + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    assert M.ssim(a, a) == pytest.approx(1.0)
    s = M.ssim(a, noisy)
    assert 0 < s < 0.9 and s == pytest.approx(M.ssim(noisy, a))
    per_frame = np.mean([M.ssim(x, y) for x, y in zip(a, noisy, strict=True)])
    assert s == pytest.approx(per_frame)


def test_flicker_is_zero_for_still_and_steady_clips_and_counts_alternation():
    still = np.full((5, 4, 4, 3), 80, np.uint8)
    ramp = np.stack([np.full((4, 4, 3), 10 * t, np.uint8) for t in range(5)])
    blink = np.stack([np.full((4, 4, 3), 100 * (t % 2), np.uint8) for t in range(5)])
    assert M.flicker(still) == 0 and M.flicker(ramp) == 0
    assert M.flicker(blink) == pytest.approx(200.0)  # |0 - 200 + 0| = |100 - 0 + 100|


# ---------------------------------------------------------------- instruction fidelity
def test_instruction_fidelity_scores_frame_zero_and_the_last_frame():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)  # SSIM's window needs 11 px
    last = video[-1].copy()
    last[0, 0, 0] ^= 1  # one level off on one value
    out = M.instruction_fidelity([video], [video[0]], [last])
    assert out["frame0_psnr"] == M.PSNR_CAP_DB and out["frame0_ssim"] == pytest.approx(1.0)
    assert out["last_frame_psnr"] == pytest.approx(10 * math.log10(255**2 * 16 * 16 * 3))
    assert set(M.instruction_fidelity([video], first_frames=[video[0]])) == {
        "frame0_psnr",
        "frame0_ssim",
    }


def test_last_frame_fidelity_by_tau_keeps_the_taus_in_order():
    target = np.full((4, 4, 3), 100, np.uint8)
    far = [np.full((3, 4, 4, 3), 0, np.uint8)]
    near = [np.concatenate([far[0][:2], target[None]])]
    curve = M.last_frame_fidelity_by_tau({0: far, 50: near}, [target])
    assert list(curve) == [0, 50]
    assert curve[50] == M.PSNR_CAP_DB and curve[0] == pytest.approx(M.psnr(far[0][-1], target))
