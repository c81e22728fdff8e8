"""An evaluation report: every score printed with its protocol, written as JSON and markdown.

``report.json`` holds everything (scores, per-score protocols, the common protocol, the
paper's numbers under a preset, warnings); ``report.md`` is the same for people. Both are
written to a temporary name and renamed.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_path

REPORT_JSON = "report.json"
REPORT_MD = "report.md"

LABELS = {
    "fvd": "FVD",
    "fid": "FID",
    "is": "frame IS (Inception on frames; not comparable with the paper)",
    "video_is": "video IS (C3D, UCF-101)",
    "clipsim": "CLIPSIM",
    "flicker": "flicker (0-255, lower is smoother)",
    "frame0_psnr": "frame 0 vs first-frame instruction, PSNR (dB)",
    "frame0_ssim": "frame 0 vs first-frame instruction, SSIM",
    "last_frame_psnr": "last frame vs last-frame instruction, PSNR (dB)",
    "last_frame_ssim": "last frame vs last-frame instruction, SSIM",
    "keyframe_psnr": "keyframe adherence: frame at each instruction's index vs it, PSNR (dB)",
    "keyframe_ssim": "keyframe adherence: the same pairs, SSIM",
    "keyframe_clip_cosine": "keyframe adherence: the same pairs, CLIP image cosine",
    "keyframe_motion": "motion between the pinned frames (0-255; a still clip scores 0)",
    "keyframe_reference_motion": "the same motion in the paired references",
    "clip_psnr": "clip vs its reference, PSNR (dB)",
    "clip_ssim": "clip vs its reference, SSIM",
}


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def _protocol_line(protocol: dict) -> str:
    return "; ".join(f"{k}: {_fmt(v)}" for k, v in protocol.items() if v not in (None, ""))


def score_lines(report: dict) -> list[str]:
    """One block per score: the value (the paper's beside it under a preset), then its
    protocol; then the common protocol and the warnings."""
    paper = report.get("paper") or {}
    lines = []
    for key, entry in report["scores"].items():
        head = f"{LABELS.get(key, key)}: {_fmt(entry['value'])}"
        if "std" in entry:
            head += f" (std over splits {_fmt(entry['std'])})"
        if key in paper:
            head += f"   [paper: {_fmt(paper[key])}]"
        lines += [head, f"    protocol: {_protocol_line(entry['protocol'])}"]
        if key in (report.get("comparable") or {}):
            lines.append(f"    comparable with the paper: {report['comparable'][key]}")
    for tau, row in (report.get("tau_sweep") or {}).items():
        lines.append(
            f"tau {tau}: last frame {row['last_psnr']:.2f} dB PSNR, SSIM {row['last_ssim']:.4f},"
            f" motion {row['motion']:.2f}"
        )
    if report.get("long"):
        from .long import long_table

        lines += long_table(report["long"])
    lines.append(f"common protocol: {_protocol_line(report['protocol'])}")
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    return lines


def markdown(report: dict) -> str:
    """A table of the scores (the paper's beside them under a preset), then each score's
    protocol, the common protocol and the warnings."""
    paper = report.get("paper") or {}
    preset = report["protocol"].get("preset")
    title = f"# Evaluation report{f' ({preset} preset)' if preset else ''}"
    lines = [title, "", "| score | value | paper | extractor |", "| --- | --- | --- | --- |"]
    for key, entry in report["scores"].items():
        value = _fmt(entry["value"]) + (f" ± {_fmt(entry['std'])}" if "std" in entry else "")
        extractor = entry["protocol"].get("extractor", "none (pixels)")
        lines.append(f"| {LABELS.get(key, key)} | {value} | {_fmt(paper.get(key))} | {extractor} |")
    for key, entry in report["scores"].items():
        lines += ["", f"### {LABELS.get(key, key)}", ""]
        if key in (report.get("comparable") or {}):
            lines += [f"Comparable with the paper: {report['comparable'][key]}", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in entry["protocol"].items()]
    if report.get("tau_sweep"):
        from .adherence import tau_sweep_table

        lines += ["", "## Last frame by tau (keyframe adherence)", ""]
        lines += tau_sweep_table(report["tau_sweep"])
    if report.get("long"):
        from .long import long_table

        lines += ["", "## Score by chunk (long videos)", ""] + long_table(report["long"])
    lines += ["", "## Common protocol", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in report["protocol"].items()]
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, report: dict) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / REPORT_JSON, out / REPORT_MD
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(markdown(report))
    return paths
