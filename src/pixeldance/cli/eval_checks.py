"""What ``pixeldance eval`` checks before its work and undoes after a failure."""

from __future__ import annotations

from pathlib import Path

from .common import UsageError


def listing(out: Path) -> set[Path] | None:
    return set(out.rglob("*")) if out.exists() else None


# what an evaluation writes before its first result: records, not results
_BOOKKEEPING = ("generation.json",)


def undo_bookkeeping(out: Path, before: set[Path] | None) -> None:
    """After a failed evaluation: if it made nothing but records and folders, remove what it
    made (a refused eval leaves nothing); videos and first frames it made stay, to be reused."""
    if not out.exists():
        return
    made = sorted(set(out.rglob("*")) - (before or set()), key=lambda p: len(p.parts))
    if any(p.is_file() and p.name not in _BOOKKEEPING for p in made):
        return
    for p in reversed(made):  # the deepest first
        if p.is_dir():
            p.rmdir()
        else:
            p.unlink()
    if before is None:
        out.rmdir()


def clip_count(args, preset, items) -> int:
    """How many clips will be scored: the samples generated, else the videos given."""
    if args.manifest is None:
        return len(items)
    return args.samples or (preset.samples if preset and preset.samples else len(items))


def check_is_splits(splits: int | None, chosen, clips: int, frames: int) -> None:
    """An explicit ``--is-splits`` must leave every split a row: the frame IS scores
    ``clips x frames`` rows, the video IS ``clips``."""
    if splits is None:
        return
    for metric, name, rows, unit in (
        ("is", "the frame IS", clips * frames, f"frames ({clips} clips x {frames})"),
        ("video_is", "the video IS", clips, "clips"),
    ):
        if metric in chosen and splits > rows:
            raise UsageError(
                f"--is-splits {splits} is more than the {rows} {unit} {name} is computed "
                f"over; use at most {rows}"
            )
