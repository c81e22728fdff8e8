"""Score a set of generated videos: every metric with the protocol that produced it.

:func:`score` reads each generated clip once (its first ``frames`` frames at its own rate),
feeds the extractors the metrics need, reads the reference set once for the statistics that
are not cached, and returns the report (a JSON-ready dict). Nothing in it is random: the same
videos, references and weights give the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..data.video import VideoError
from . import metrics as M
from .adherence import KeyframeAccumulator
from .inputs import Item, fit_clip, fit_image, native_fps, read_clip
from .protocol import DEFAULT_FRAMES, DEFAULT_IS_SPLITS, METRICS
from .references import FVD2048_CLIPS, ReferenceSampling, cached_statistics

PSNR_DEF = (
    f"PSNR per frame on 0-255 (capped at {M.PSNR_CAP_DB:g} dB), mean over frames, then over clips"
)
SSIM_DEF = (
    "SSIM (Wang 2004): 11-tap Gaussian window, sigma 1.5, K1 0.01, K2 0.03, population "
    "covariances, per channel, mean over the valid region (5 px borders dropped) as "
    "scikit-image's structural_similarity(gaussian_weights=True, use_sample_covariance=False)"
)


@dataclass
class ScoreConfig:
    metrics: tuple[str, ...] | None = None  # None: every metric the inputs allow
    frames: int = DEFAULT_FRAMES
    reference_fps: float | None = None  # None: the generated videos' frame rate
    reference_native_fps: bool = False  # read references at their own rate (the presets)
    reference_mode: str = "start"  # or "fvd2048_16f" (references.ReferenceSampling)
    reference_clips: int = FVD2048_CLIPS
    reference_seed: int = 0
    cache_dir: Path | None = None  # reference statistics cache (None: no cache)
    is_splits: int = DEFAULT_IS_SPLITS
    is_seed: int = 0  # the IS rows are shuffled with this seed before the splits
    keyframe_clip: bool = False  # keyframe adherence also by CLIP image cosine (needs CLIP)
    batch_size: int = 8
    progress: bool = True
    protocol: dict = field(default_factory=dict)  # more to record (model, settings, seed...)


class Extractors:
    """The networks, each loaded on first use by its loader (or given ready-made)."""

    def __init__(self, loaders: dict[str, Callable] | None = None, **ready):
        self._loaders, self._ready = dict(loaders or {}), dict(ready)

    def __getattr__(self, role: str):  # i3d, inception, clip
        if role.startswith("_"):
            raise AttributeError(role)
        if role not in self._ready:
            if role not in self._loaders:
                raise ValueError(f"no {role} extractor was given")
            self._ready[role] = self._loaders[role]()
        return self._ready[role]


def choose_metrics(
    requested: Sequence[str] | None, items: Sequence[Item], references: Sequence[Path]
) -> list[str]:
    """The metrics to compute: ``requested`` checked against the inputs (a metric that cannot
    be computed is an error naming what is missing), or every one the inputs allow."""
    has = {
        "fvd": len(references) >= 2 and len(items) >= 2,
        "fid": len(references) >= 1,
        "is": True,
        "video_is": True,
        "clipsim": all(it.prompt for it in items),
        "flicker": True,
        "fidelity": any(it.first_frame or it.last_frame for it in items),
        "keyframes": any(it.first_frame or it.last_frame for it in items),
        "psnr": all(it.reference for it in items),
        "ssim": all(it.reference for it in items),
    }
    why = {
        "fvd": "at least 2 generated and 2 reference videos",
        "fid": "reference videos (--references, or a reference column)",
        "clipsim": "a prompt for every video (a prompt column, or .txt files beside them)",
        "fidelity": "first_frame or last_frame instructions in the manifest",
        "keyframes": "first_frame or last_frame instructions in the manifest",
        "psnr": "a reference video paired with every generated one (a reference column)",
        "ssim": "a reference video paired with every generated one (a reference column)",
    }
    if requested is None:  # the video IS only when asked (its C3D file is rarely at hand)
        return [m for m in METRICS if has[m] and m != "video_is"]
    missing = [m for m in requested if not has[m]]
    if missing:
        raise ValueError("; ".join(f"{m} needs {why[m]}" for m in missing))
    return list(requested)


class _VideoBatches:
    """Clips for FVD, ``size`` to an I3D call, their features added to ``stats``. The I3D
    extractor is looked up at the first call (a missing one is an error only then)."""

    def __init__(self, extractors: Extractors, stats: M.RunningStatistics, size: int):
        self.extractors, self.stats, self.size = extractors, stats, size
        self.pending: list[np.ndarray] = []

    def add(self, clip: np.ndarray) -> None:
        self.pending.append(clip)
        if len(self.pending) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.stats.add(self.extractors.i3d(self.pending))
            self.pending.clear()


def _read(path: Path, frames: int, fps: float | None, what: str) -> np.ndarray:
    try:
        return read_clip(path, frames, fps)
    except VideoError as err:
        raise ValueError(f"{what} {path}: {err}") from err


def score(
    items: Sequence[Item],
    references: Sequence[Path],
    extractors: Extractors,
    config: ScoreConfig | None = None,
) -> dict:
    """Scores and protocols of the generated videos ``items[i].video`` (see module docs)."""
    config = config or ScoreConfig()
    if not items or any(it.video is None for it in items):
        raise ValueError("every item needs a generated video to score")
    chosen = choose_metrics(config.metrics, items, references)
    frames = config.frames
    rates = sorted({round(native_fps(it.video), 3) for it in items})
    sampling = reference_sampling(config, float(np.median(rates)))
    ref_fps = sampling.fps  # paired references (PSNR, SSIM): None = their own rate
    bar = dict(disable=not config.progress, leave=False)

    acc: dict[str, list] = {k: [] for k in ("is", "video_is", "clipsim", "flicker")}
    running = {"fvd": M.RunningStatistics(), "fid": M.RunningStatistics()}
    fidelity: dict[str, list] = {}
    paired: dict[str, list] = {"psnr": [], "ssim": []}
    sizes: set = set()
    text: dict[str, np.ndarray] = {}
    if "clipsim" in chosen:
        prompts = sorted({it.prompt for it in items})
        text = dict(zip(prompts, extractors.clip.text_embeddings(prompts), strict=True))
    fvd = _VideoBatches(extractors, running["fvd"], config.batch_size)
    keyframes = KeyframeAccumulator()
    use_clip = "keyframes" in chosen and config.keyframe_clip
    embed = extractors.clip.image_embeddings if use_clip else None
    for it in tqdm(items, desc="scoring", **bar):
        clip = _read(it.video, frames, None, "generated video")
        h, w = clip.shape[1:3]
        sizes.add((h, w))
        if "fvd" in chosen:
            fvd.add(clip)
        if "fid" in chosen:
            running["fid"].add(extractors.inception.features(clip))
        if "is" in chosen:  # (F, K) per clip, kept as float32 for the splits
            acc["is"].append(extractors.inception.probabilities(clip).astype(np.float32))
        if "video_is" in chosen:  # (1, K) per clip
            acc["video_is"].append(extractors.c3d.probabilities([clip]).astype(np.float32))
        if "clipsim" in chosen:
            acc["clipsim"].append(
                M.clipsim(extractors.clip.image_embeddings(clip), text[it.prompt])
            )
        if "flicker" in chosen:
            acc["flicker"].append(M.flicker(clip))
        if "fidelity" in chosen:
            firsts = [fit_image(it.first_frame, h, w)] if it.first_frame else None
            lasts = [fit_image(it.last_frame, h, w)] if it.last_frame else None
            for k, v in M.instruction_fidelity([clip], firsts, lasts).items():
                fidelity.setdefault(k, []).append(v)
        ref = None
        if "psnr" in chosen or "ssim" in chosen or ("keyframes" in chosen and it.reference):
            ref = fit_clip(_read(it.reference, frames, ref_fps, "reference video"), h, w)
        if "keyframes" in chosen:
            pins = {
                i: fit_image(p, h, w) for i, p in ((0, it.first_frame), (-1, it.last_frame)) if p
            }
            keyframes.add(clip, pins, ref, embed)
        if "psnr" in chosen or "ssim" in chosen:
            for key, fn in (("psnr", M.video_psnr), ("ssim", M.ssim)):
                if key in chosen:
                    paired[key].append(fn(clip, ref))
    fvd.flush()

    common = {
        "pixeldance_version": __version__,
        "generated_videos": len(items),
        "frames": frames,
        "generated_sampling": f"the first {frames} frames of each generated video at its own "
        f"rate ({', '.join(f'{r:g}' for r in rates)} fps)",
        "resolution": sorted(f"{h}x{w}" for h, w in sizes),
        **config.protocol,
    }
    scores: dict[str, dict] = {}
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref_stats, happened = _reference_statistics(
            chosen, references, extractors, config, sampling
        )
        for key, role in (("fvd", "i3d"), ("fid", "inception")):
            if key not in chosen:
                continue
            ref, gen = ref_stats[key], running[key]
            value = M.frechet_distance(*gen.statistics(), ref.mu, ref.sigma)
            protocol = getattr(extractors, role).protocol()
            scores[key] = _entry(value, protocol, ref, gen.count, happened)
        if "fid" in scores:
            scores["fid"]["protocol"]["unit"] = f"frames (all {frames} of each clip)"
    notes += list(dict.fromkeys(str(w.message) for w in caught))
    for key, role, unit in (
        ("is", "inception", f"frames (all {frames} of each clip)"),
        ("video_is", "c3d", "clips (the first 16 frames of each)"),
    ):
        if key not in chosen:
            continue
        probs = np.concatenate(acc[key])
        splits = min(config.is_splits, len(probs))
        mean, std = M.inception_score(probs, splits, seed=config.is_seed)
        scores[key] = {
            "value": mean,
            "std": std,
            "protocol": {
                **getattr(extractors, role).protocol(),
                "samples_scored": len(probs),
                "unit": unit,
                "splits": splits,
                "split_order": f"rows shuffled with numpy default_rng({config.is_seed})"
                ".permutation, then cut into consecutive splits",
            },
        }
    if "clipsim" in chosen:
        scores["clipsim"] = {
            "value": float(np.mean(acc["clipsim"])),
            "protocol": {**extractors.clip.protocol(), "clips": len(acc["clipsim"])},
        }
    if "flicker" in chosen:
        scores["flicker"] = {
            "value": float(np.mean(acc["flicker"])),
            "protocol": {"definition": "mean |x[t+1] - 2 x[t] + x[t-1]| on 0-255, mean over clips"},
        }
    fit = (
        "instruction resized to cover the video (bicubic) and centre-cropped, as the pipeline does"
    )
    for key, values in fidelity.items():
        scores[key] = {
            "value": float(np.mean(values)),
            "protocol": {
                "clips": len(values),
                "instruction_fit": fit,
                "definition": PSNR_DEF if key.endswith("psnr") else SSIM_DEF,
            },
        }
    scores.update(keyframes.entries(extractors.clip.protocol() if use_clip else None))
    for key in ("psnr", "ssim"):
        if key in chosen:
            scores[f"clip_{key}"] = {
                "value": float(np.mean(paired[key])),
                "protocol": {
                    "definition": PSNR_DEF if key == "psnr" else SSIM_DEF,
                    "pairs": len(paired[key]),
                    "reference_sampling": f"first {frames} frames at "
                    f"{'their own rate' if ref_fps is None else f'{ref_fps:g} fps'}, fitted to "
                    "the generated size (cover, bicubic, centre crop)",
                },
            }
    for key, entry in scores.items():
        if entry["protocol"].get("checksum_verified") is False:
            notes.append(
                f"{key}: the weights' checksum is not the known one ({entry['protocol']['sha256']}); "
                "this score is not comparable with published ones"
            )
    return {"scores": scores, "protocol": common, "warnings": notes}


def _entry(value, extractor_protocol, stats, generated, sampling) -> dict:
    return {
        "value": value,
        "protocol": {
            **extractor_protocol,
            "generated_samples": generated,
            "reference_samples": stats.count,
            "reference_sampling": sampling,
            "reference_statistics": str(stats.cache) if stats.cache else None,
            "reference_statistics_reused": stats.reused,
        },
    }


def reference_sampling(config: ScoreConfig, generated_fps: float) -> ReferenceSampling:
    """How this run draws its reference clips (see :class:`ReferenceSampling`)."""
    native = config.reference_native_fps or config.reference_mode != "start"
    fps = None if native else (config.reference_fps or generated_fps)
    return ReferenceSampling(
        config.reference_mode, config.frames, fps, config.reference_clips, config.reference_seed
    )


def _reference_statistics(chosen, references, extractors, config, sampling) -> tuple[dict, str]:
    """Cached statistics for FVD / FID (the references decoded once for all that miss), and
    the sampling as it happened (the rates actually used, read from the clips)."""
    wanted = [m for m in ("fvd", "fid") if m in chosen]
    if not wanted:
        return {}, sampling.describe()
    protocols = {
        "fvd": {**extractors.i3d.protocol(), **sampling.key()} if "fvd" in wanted else None,
        "fid": {**extractors.inception.protocol(), **sampling.key()} if "fid" in wanted else None,
    }
    done: dict[str, M.RunningStatistics] = {}
    skipped: list[str] = []
    rates: set[float] = set()

    def extract_all() -> dict[str, M.RunningStatistics]:
        if done:
            return done
        video, frame = M.RunningStatistics(), M.RunningStatistics()
        batches = _VideoBatches(extractors, video, config.batch_size)
        draws = sampling.draw(references)
        for p, clip in tqdm(draws, desc="references", disable=not config.progress, leave=False):
            if isinstance(clip, Exception):
                skipped.append(f"{p}: {clip}")
                continue
            rates.add(round(clip.fps, 3))
            if "fvd" in wanted:
                batches.add(clip.frames)
            if "fid" in wanted:
                frame.add(extractors.inception.features(clip.frames))
        batches.flush()
        if not video.count and not frame.count:
            raise ValueError(f"no reference video could be read ({len(skipped)} failed)")
        if skipped:
            warnings.warn(
                f"{len(skipped)} reference clips skipped, e.g. {skipped[0]}", stacklevel=2
            )
        done.update(fvd=video, fid=frame)
        return done

    stats = {
        m: cached_statistics(
            m, references, protocols[m], config.cache_dir, lambda m=m: extract_all()[m]
        )
        for m in wanted
    }
    happened = sampling.describe()
    if rates:
        happened += f"; rates used: {', '.join(f'{r:g}' for r in sorted(rates))} fps"
    else:
        happened += "; statistics read from the cache (made under this same sampling)"
    return stats, happened
