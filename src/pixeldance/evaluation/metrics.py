"""Metric math as pure functions of features and frames; no network, no weights.

Frames are uint8 ``(H, W, 3)``, videos uint8 ``(F, H, W, 3)`` (the layout at the edges: what
decoders give and files hold). Features are float arrays ``(N, D)``.

- :func:`frechet_distance` (FVD and FID alike, on the statistics of two feature sets);
- :func:`inception_score` from class probabilities, over splits;
- :func:`clipsim`: mean over frames of the image-text cosine similarity;
- :func:`psnr` (one MSE), :func:`video_psnr` (per-frame mean), :func:`ssim` (valid region,
  as scikit-image) and the weight-free :func:`flicker`;
- instruction fidelity: frame 0 against the first-frame instruction, the last frame against
  the last-frame instruction (:func:`instruction_fidelity`), and the latter by tau
  (:func:`last_frame_fidelity_by_tau`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

PSNR_CAP_DB = 100.0  # PSNR of identical images (otherwise infinite)


class SmallSampleWarning(UserWarning):
    """Fewer samples than feature dimensions: the covariance is singular."""


# ---------------------------------------------------------------- Frechet distance
def _check_sample_count(n: int, d: int) -> None:
    if n < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {n}")
    if n <= d:
        warnings.warn(
            f"{n} samples of {d}-dimensional features: with samples <= dimension the covariance "
            "is singular and the Frechet distance is dominated by the sample count; use more "
            f"than {d} samples (the paper-style protocols use thousands)",
            SmallSampleWarning,
            stacklevel=3,
        )


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased, N - 1) of features ``(N, D)``.

    Warns (:class:`SmallSampleWarning`) when N <= D: the covariance then has rank < D and the
    Frechet distance computed from it mostly measures the sample count, not the model.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D); got shape {x.shape}")
    _check_sample_count(*x.shape)
    return x.mean(axis=0), np.cov(x, rowvar=False)


class RunningStatistics:
    """Mean and covariance of features added batch by batch, without keeping the features
    (sums of the features and of their outer products, shifted by the first one for accuracy).
    :meth:`statistics` equals :func:`feature_statistics` of all the batches stacked."""

    def __init__(self):
        self.count = 0
        self._shift = self._s1 = self._s2 = None

    def add(self, features: np.ndarray) -> None:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or (self._shift is not None and x.shape[1] != len(self._shift)):
            raise ValueError(f"features must be (N, D) with one D throughout; got {x.shape}")
        if len(x) == 0:
            return
        if self._shift is None:
            d = x.shape[1]
            self._shift, self._s1, self._s2 = x[0].copy(), np.zeros(d), np.zeros((d, d))
        y = x - self._shift
        self._s1 += y.sum(axis=0)
        self._s2 += y.T @ y
        self.count += len(x)

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean ``(D,)``, unbiased covariance ``(D, D)``); warns as :func:`feature_statistics`."""
        if self._shift is None:
            raise ValueError("no features were added")
        n = self.count
        _check_sample_count(n, len(self._shift))
        mean = self._s1 / n
        sigma = (self._s2 - n * np.outer(mean, mean)) / (n - 1)
        return mean + self._shift, sigma


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``.

    The matrix square root is scipy's ``sqrtm``; if the product is singular, ``eps`` is added to
    both diagonals. A square root with a large imaginary part (a numerical failure) raises.
    """
    from scipy.linalg import sqrtm

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2)
    sigma2 = sigma2.astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"statistics differ in shape: mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * eps
        covmean = sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"matrix square root has an imaginary part of {np.abs(covmean.imag).max():.3g}"
            )
        covmean = covmean.real
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(max(value, 0.0))


def frechet_distance_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between two feature sets ``(N, D)`` and ``(M, D)``."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


# ---------------------------------------------------------------- inception score
def inception_score(
    probs: np.ndarray, splits: int = 10, seed: int | None = 0
) -> tuple[float, float]:
    """Inception score ``exp(E_x KL(p(y|x) || p(y)))`` of class probabilities ``(N, K)``.

    The rows are shuffled with ``np.random.default_rng(seed).permutation`` (``seed=None``: kept
    in the order given) and cut into ``splits`` parts; the score is computed on each (its own
    marginal p(y)) and the mean and standard deviation over parts are returned. Shuffling
    matters: inputs sorted by class (UCF-101 files are) would give each split a few classes
    only and a much lower score. A predictor that says the same thing for every input scores
    1; confident predictions spread evenly over K classes score K.
    """
    from scipy.special import xlogy

    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (N, K); got shape {p.shape}")
    if splits < 1 or len(p) < splits:
        raise ValueError(f"need at least one sample per split: {len(p)} samples, {splits} splits")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("each row must be a probability distribution (non-negative, sums to 1)")
    if seed is not None:
        p = p[np.random.default_rng(seed).permutation(len(p))]
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1)
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


# ---------------------------------------------------------------- text-video agreement
def clipsim(image_embeds: np.ndarray, text_embed: np.ndarray) -> float:
    """CLIPSIM of one clip: mean over its frames of cos(image embedding, text embedding).

    ``image_embeds`` ``(F, D)``: one embedding per frame; ``text_embed`` ``(D,)``: the prompt's.
    """
    im = np.asarray(image_embeds, dtype=np.float64)
    tx = np.asarray(text_embed, dtype=np.float64).reshape(-1)
    if im.ndim != 2 or im.shape[1] != tx.shape[0]:
        raise ValueError(
            f"image embeddings (F, D) and a text embedding (D,); got {im.shape}, {tx.shape}"
        )
    im = im / np.linalg.norm(im, axis=1, keepdims=True).clip(1e-12)
    tx = tx / max(np.linalg.norm(tx), 1e-12)
    return float((im @ tx).mean())


# ---------------------------------------------------------------- pixel agreement
def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB from one MSE over everything given, on a [0, ``peak``] scale, capped at
    100 dB (identical). For one image this is the usual PSNR; for a clip it is the
    *whole-clip-MSE* PSNR (not the per-frame mean: see :func:`video_psnr`)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10 * math.log10(peak**2 / mse))


def video_psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR of two clips ``(F, H, W, C)`` as video papers report it: the mean over frames of
    each frame's PSNR (each capped at 100 dB). A frame ``(H, W, C)`` is a one-frame clip."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    return float(np.mean([psnr(x, y, peak) for x, y in zip(a, b, strict=True)]))


SSIM_SIGMA = 1.5  # Wang et al. 2004, sec. III-C: 11x11 circular-symmetric Gaussian, sigma 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03  # Wang et al. 2004, sec. III-C
SSIM_TRUNCATE = 3.5  # 3.5 sigma each side: 2 * int(3.5 * 1.5 + 0.5) + 1 = 11 taps
SSIM_WINDOW = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Structural similarity (Wang et al. 2004): 11-tap Gaussian window, sigma 1.5, K1 0.01,
    K2 0.03, population (not sample) covariances, per channel; the SSIM map is averaged over
    its *valid* region only (the pixels whose whole window lies inside the image: 5 px are
    dropped on each side), then over channels and frames. This is scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=peak)``.

    ``a``, ``b``: ``(H, W, 3)`` frames or ``(F, H, W, 3)`` videos of equal shape, at least 11
    px on each side. 1 = identical.
    """
    from scipy.ndimage import gaussian_filter

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    if a.ndim != 4:
        raise ValueError(f"expected (H, W, C) or (F, H, W, C); got {a.shape}")
    if min(a.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} px (its window); "
            f"got {a.shape[1]}x{a.shape[2]}"
        )
    c1, c2 = (SSIM_K1 * peak) ** 2, (SSIM_K2 * peak) ** 2
    sig = (0, SSIM_SIGMA, SSIM_SIGMA, 0)  # blur over H and W only

    def blur(x):
        return gaussian_filter(x, sigma=sig, truncate=SSIM_TRUNCATE, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    pad = (SSIM_WINDOW - 1) // 2  # the border where the window leaves the image
    return float((num / den)[:, pad:-pad, pad:-pad].mean())


def flicker(video: np.ndarray) -> float:
    """Temporal flicker: mean |x[t+1] - 2 x[t] + x[t-1]| (second temporal difference) on the
    video's own scale (0-255 for uint8), weight-free; 0 for a still or uniformly moving clip."""
    v = np.asarray(video, dtype=np.float32)
    return float(np.abs(v[2:] - 2 * v[1:-1] + v[:-2]).mean()) if len(v) > 2 else 0.0


def mean_psnr(videos: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> float:
    """Mean over pairs of the whole-clip-MSE PSNR (:func:`psnr` of each clip; the Dancing
    Shapes benchmarks' ``clip_psnr``). ``pixeldance eval``'s clip PSNR is :func:`video_psnr`."""
    return float(np.mean([psnr(v, r) for v, r in zip(videos, references, strict=True)]))


# ---------------------------------------------------------------- instruction fidelity
def instruction_fidelity(
    videos: Sequence[np.ndarray],
    first_frames: Sequence[np.ndarray] | None = None,
    last_frames: Sequence[np.ndarray] | None = None,
) -> dict[str, float]:
    """How closely videos ``(F, H, W, 3)`` follow their image instructions ``(H, W, 3)`` (at the
    videos' size): ``frame0_psnr``/``frame0_ssim`` (frame 0 against the first-frame
    instruction) and ``last_frame_psnr``/``last_frame_ssim`` (the last frame against the
    last-frame instruction), each a mean over videos; keys for absent instructions are left out.
    """
    out: dict[str, float] = {}
    for key, index, images in (("frame0", 0, first_frames), ("last_frame", -1, last_frames)):
        if images is None:
            continue
        pairs = list(zip(videos, images, strict=True))
        out[f"{key}_psnr"] = float(np.mean([psnr(v[index], im) for v, im in pairs]))
        out[f"{key}_ssim"] = float(np.mean([ssim(v[index], im) for v, im in pairs]))
    return out


def last_frame_fidelity_by_tau(
    videos_by_tau: Mapping[int, Sequence[np.ndarray]], last_frames: Sequence[np.ndarray]
) -> dict[int, float]:
    """Mean PSNR of the last frame against the last-frame instruction, for each tau (the number
    of denoising steps the last frame guided): ``{tau: dB}``, in the order given."""
    return {
        tau: float(np.mean([psnr(v[-1], f) for v, f in zip(videos, last_frames, strict=True)]))
        for tau, videos in videos_by_tau.items()
    }
