"""Keyframe adherence: how closely a generated clip holds the image instructions it was given,
and whether it still moves between them.

A first/last-frame model is judged on its keyframes: frame 0 against the first-frame
instruction, frame F-1 against the last-frame instruction (and, with keyframes anywhere, the
frame at each instruction's index). Each pair is scored by PSNR, SSIM and, when a CLIP model is
given, the cosine of the two CLIP image embeddings. A clip that copies its first frame 16 times
scores perfectly on frame 0, so the motion between the pinned frames is reported beside them
(:func:`pinned_motion`), with the reference clip's where there is one.

Frames are uint8 ``(H, W, 3)``, clips uint8 ``(F, H, W, 3)``; pure functions, and one
accumulator for :func:`pixeldance.evaluation.score.score`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from . import metrics as M

Embed = Callable[[np.ndarray], np.ndarray]  # uint8 frames (N, H, W, 3) -> embeddings (N, D)


def pinned_motion(video: np.ndarray, indices: list[int]) -> float:
    """Mean |x[t+1] - x[t]| on 0-255 over the frames from the first to the last pinned index
    (all frames if fewer than two distinct indices): 0 for a clip that stands still."""
    v = np.asarray(video, dtype=np.float32)
    n = len(v)
    pins = sorted({i % n for i in indices})
    lo, hi = (pins[0], pins[-1]) if len(pins) > 1 else (0, n - 1)
    if hi <= lo:
        return 0.0
    return float(np.abs(np.diff(v[lo : hi + 1], axis=0)).mean())


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``(N, D)`` arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na = np.linalg.norm(a, axis=1).clip(1e-12)
    nb = np.linalg.norm(b, axis=1).clip(1e-12)
    return (a * b).sum(axis=1) / (na * nb)


def keyframe_scores(
    video: np.ndarray, keyframes: Mapping[int, np.ndarray], embed: Embed | None = None
) -> dict[int, dict[str, float]]:
    """Per keyframe index (negative = from the end): PSNR, SSIM (and CLIP image cosine with
    ``embed``) of the generated frame at that index against the instruction (already at the
    clip's size)."""
    out: dict[int, dict[str, float]] = {}
    indices = list(keyframes)
    if embed is not None and indices:
        gen = embed(np.stack([video[i] for i in indices]))
        ins = embed(np.stack([keyframes[i] for i in indices]))
        cos = cosine(gen, ins)
    for k, i in enumerate(indices):
        frame, image = video[i], keyframes[i]
        out[i] = {"psnr": M.psnr(frame, image), "ssim": M.ssim(frame, image)}
        if embed is not None:
            out[i]["clip_cosine"] = float(cos[k])
    return out


class KeyframeAccumulator:
    """Collects keyframe scores clip by clip; :meth:`entries` gives the report's entries."""

    def __init__(self):
        self.values: dict[str, list[float]] = {}
        self.by_index: dict[str, list[float]] = {}

    def add(
        self,
        video: np.ndarray,
        keyframes: Mapping[int, np.ndarray],
        reference: np.ndarray | None = None,
        embed: Embed | None = None,
    ) -> None:
        if not keyframes:
            return
        n = len(video)
        for i, s in keyframe_scores(video, keyframes, embed).items():
            name = "first" if i % n == 0 else "last" if i % n == n - 1 else f"frame {i % n}"
            for key, value in s.items():
                self.values.setdefault(key, []).append(value)
                self.by_index.setdefault(f"{name} {key}", []).append(value)
        self.values.setdefault("motion", []).append(pinned_motion(video, list(keyframes)))
        if reference is not None:
            motion = pinned_motion(reference, list(keyframes))
            self.values.setdefault("reference_motion", []).append(motion)

    def entries(self, clip_protocol: dict | None = None) -> dict[str, dict]:
        if not self.values:
            return {}
        per_index = {k: float(np.mean(v)) for k, v in sorted(self.by_index.items())}
        definitions = {
            "psnr": "PSNR (0-255, capped at 100 dB) of the generated frame at each instruction's "
            "index against the instruction (fitted: cover, bicubic, centre crop)",
            "ssim": "SSIM (as scikit-image, valid region) of the same pairs",
            "clip_cosine": "cosine of the CLIP image embeddings of the same pairs",
            "motion": "mean |x[t+1] - x[t]| (0-255) between the first and last pinned frames of "
            "each generated clip: a still clip scores 0 here, however well it holds frame 0",
            "reference_motion": "the same motion measured on each paired reference clip",
        }
        out = {}
        for key, values in self.values.items():
            protocol: dict = {"definition": definitions[key], "pairs_or_clips": len(values)}
            if key != "motion" and key != "reference_motion":
                protocol["by_index"] = {k: v for k, v in per_index.items() if k.endswith(key)}
            if key == "clip_cosine" and clip_protocol:
                protocol.update(clip_protocol)
            out[f"keyframe_{key}"] = {"value": float(np.mean(values)), "protocol": protocol}
        return out


def tau_sweep_table(rows: Mapping[int, Mapping[str, float]]) -> list[str]:
    """Markdown table of a tau sweep ``{tau: {last_psnr, last_ssim, motion}}``."""
    lines = [
        "| tau | last frame PSNR (dB) | last frame SSIM | motion (0-255) |",
        "| --- | --- | --- | --- |",
    ]
    for tau, r in rows.items():
        lines.append(f"| {tau} | {r['last_psnr']:.2f} | {r['last_ssim']:.4f} | {r['motion']:.2f} |")
    return lines


def parse_taus(text: str) -> list[int]:
    """``"0,10,25"`` -> [0, 10, 25]; anything else is a one-line error."""
    try:
        taus = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        taus = []
    if not taus:
        raise ValueError(f"--tau-sweep takes comma-separated whole numbers, got {text!r}")
    return taus


def tau_sweep(
    pipe,
    settings,
    items,
    out,
    taus: list[int],
    seed: int = 0,
    first_frame: str = "manifest",
    maker=None,
    last_frame: str = "manifest",
    record: dict | None = None,
) -> dict[int, dict[str, float]]:
    """Generate the samples that have a last-frame instruction again at each tau (the number
    of denoising steps the last frame guides; paper sec. 3.3) into ``{out}/tau_sweep/tau{t}``,
    and score each: last frame vs its instruction (PSNR, SSIM) and the motion between the
    pinned frames. ``{tau: {"last_psnr", "last_ssim", "motion", "clips"}}``."""
    from dataclasses import replace
    from pathlib import Path

    from .generate import generate_videos
    from .inputs import fit_image, read_clip

    rows: dict[int, dict[str, float]] = {}
    for tau in taus:
        if not 0 <= tau <= settings.num_inference_steps:
            raise ValueError(
                f"--tau-sweep: tau {tau} is outside 0..{settings.num_inference_steps} (the steps)"
            )
        folder = Path(out) / "tau_sweep" / f"tau{tau}"
        done = generate_videos(
            pipe, replace(settings, tau=tau), items, folder, seed, first_frame,
            {**(record or {}), "tau": tau}, False, maker, last_frame,
        )  # fmt: skip
        psnrs, ssims, motions = [], [], []
        for it in done:
            if it.last_frame is None:
                continue
            clip = read_clip(it.video, settings.num_frames)
            target = fit_image(it.last_frame, *clip.shape[1:3])
            psnrs.append(M.psnr(clip[-1], target))
            ssims.append(M.ssim(clip[-1], target))
            motions.append(pinned_motion(clip, [0, -1]))
        if not psnrs:
            raise ValueError("--tau-sweep needs samples with a last-frame instruction")
        rows[tau] = {
            "last_psnr": float(np.mean(psnrs)),
            "last_ssim": float(np.mean(ssims)),
            "motion": float(np.mean(motions)),
            "clips": len(psnrs),
        }
    return rows
