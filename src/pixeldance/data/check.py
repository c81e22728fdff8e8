"""Scan a manifest for files that cannot give a training clip, without training."""

from __future__ import annotations

from dataclasses import dataclass, field

from .manifest import IMAGE_SUFFIXES, read_video_records
from .video import VideoError, decode_clip


@dataclass
class CheckReport:
    total: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def summary(self) -> str:
        lines = [f"{path}: {reason}" for path, reason in self.bad]
        kinds: dict[str, int] = {}
        for _, reason in self.bad:
            kind = reason.split(":", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        by_kind = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items()))
        lines.append(
            f"{self.total} files checked, {self.total - len(self.bad)} good, {len(self.bad)} bad"
            + (f" ({by_kind})" if by_kind else "")
        )
        return "\n".join(lines)


def _check_one(job) -> tuple[str, str | None]:
    path, num_frames, fps = job
    try:
        decode_clip(path, num_frames, fps, start=0.0)
    except VideoError as err:
        return path, f"{type(err).__name__}: {err}"
    return path, None


def check_manifest(
    manifest, num_frames: int = 16, fps: float = 4.0, workers: int = 1, progress: bool = True
) -> CheckReport:
    """Decode the first clip of every video in ``manifest``; report the ones that fail."""
    from tqdm import tqdm

    records = read_video_records(manifest)
    jobs = [(records.path(i), num_frames, fps) for i in range(len(records))]
    if workers > 1:
        from multiprocessing import Pool

        with Pool(workers) as pool:
            results = list(
                tqdm(
                    pool.imap(_check_one, jobs),
                    total=len(jobs),
                    disable=not progress,
                    desc="checking",
                )
            )
    else:
        results = [_check_one(j) for j in tqdm(jobs, disable=not progress, desc="checking")]
    report = CheckReport(total=len(results))
    report.bad = [(p, reason) for p, reason in results if reason is not None]
    return report


def image_list_problem(manifest, rows: int = 50) -> str | None:
    """Why ``manifest`` is a list of still images rather than videos (its first ``rows`` paths all
    end in an image suffix), or None. Reads only those rows: cheap enough before any work."""
    import csv
    import json
    from pathlib import Path

    from .manifest_index import PATH_COLUMNS

    path = Path(manifest)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            if path.suffix.lower() in (".jsonl", ".json"):
                items = [
                    json.loads(line)
                    for _, line in zip(range(rows), f, strict=False)
                    if line.strip()
                ]
            else:
                items = [row for _, row in zip(range(rows), csv.DictReader(f), strict=False)]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):
        return None  # the manifest reader reports what is wrong with it
    paths = [
        str(item.get(col, ""))
        for item in items
        if isinstance(item, dict)
        for col in PATH_COLUMNS
        if item.get(col)
    ]
    if paths and all(Path(p).suffix.lower() in IMAGE_SUFFIXES for p in paths):
        return (
            f"{path} lists still images ({Path(paths[0]).name}, ...), not videos; give a manifest "
            "of videos as the data, and images with --set data.images=" + str(path)
        )
    return None
