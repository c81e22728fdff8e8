"""What this project wrote, and the one way it replaces it.

Nothing a user owns is deleted or overwritten. A command that writes a folder writes it under a
temporary name beside its destination and renames it into place when complete. A destination
that already exists is replaced only when it is recognisably this project's own output of the
same kind (a pipeline folder, a run folder, a Dancing Shapes dataset, a latent cache, an
evaluation folder, a folder of PNG frames) and the user asked (``--overwrite``). Anything else
is refused before any work, in one line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_FRAME_RE = re.compile(r"frame_\d{5}\.png")


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_pipeline_folder(folder: Path) -> bool:
    """A pipeline folder this project saved (``model_index.json`` naming PixelDancePipeline)."""
    index = _json(folder / "model_index.json")
    return isinstance(index, dict) and index.get("_class_name") == "PixelDancePipeline"


def is_run_folder(folder: Path) -> bool:
    """A training run folder: the ``config.yaml`` train writes, with its four sections, or a
    complete checkpoint (``checkpoint-NNNNNNNN/COMPLETE``) copied in to resume from."""
    import yaml

    if any(
        re.fullmatch(r"checkpoint-\d{8}", p.name) and (p / "COMPLETE").is_file()
        for p in folder.iterdir()
    ):
        return True
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(config, dict) and {"model", "data", "optim", "run"} <= set(config)


def is_shapes_dataset(folder: Path) -> bool:
    """A Dancing Shapes dataset written by ``make-shapes``."""
    return (folder / "manifest.csv").is_file() and (folder / "params").is_dir()


def is_latent_cache(folder: Path) -> bool:
    """A latent cache written by ``preprocess`` (its ``index.json`` lists shards)."""
    index = _json(folder / "index.json")
    return isinstance(index, dict) and "shards" in index


def is_eval_folder(folder: Path) -> bool:
    """A folder ``eval`` wrote: its report or the record of the videos it generated."""
    return any(
        (folder / name).is_file()
        for name in ("report.json", "generated.csv", "videos/generation.json")
    )


def is_frames_folder(folder: Path) -> bool:
    """A folder of PNG frames ``generate`` wrote: ``frame_00000.png``... and nothing else."""
    names = [p.name for p in folder.iterdir()]
    return bool(names) and all(_FRAME_RE.fullmatch(n) for n in names)


KINDS: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "pipeline": ("a pixeldance pipeline folder", is_pipeline_folder),
    "run": ("a pixeldance run folder", is_run_folder),
    "dataset": ("a Dancing Shapes dataset", is_shapes_dataset),
    "cache": ("a pixeldance latent cache", is_latent_cache),
    "eval": ("a pixeldance evaluation folder", is_eval_folder),
    "frames": ("a folder of PNG frames written by pixeldance", is_frames_folder),
}


def _inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def check_destination(
    out: str | os.PathLike,
    kind: str,
    overwrite: bool,
    flag: str = "--out",
    sources: Iterable[str | os.PathLike] = (),
    add_to: bool = False,
) -> Path:
    """Check, before any work, that the folder ``out`` may be written; return it.

    A new or empty folder is fine. An existing folder must be ``kind`` (see :data:`KINDS`) and,
    unless ``add_to`` (a command that adds to its own folder, as train does to a run folder),
    the user must have asked for it to be replaced (``overwrite``). ``out`` may not be the
    current folder or hold it, nor lie inside or around any of ``sources`` (the folders the
    command reads). Raises ValueError naming ``flag`` and what to do instead.
    """
    path = Path(out)
    if path.is_symlink() and not path.exists():
        raise ValueError(
            f"{flag} {out} is a broken symbolic link or a symlink loop; choose another folder"
        )
    try:
        where = path.resolve(strict=False)
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise ValueError(f"{flag} {out} cannot be resolved ({err}); choose another folder") from err
    if _inside(Path.cwd().resolve(), where):
        raise ValueError(
            f"{flag} {out} is the current folder or holds it; give a new folder's name"
        )
    for src in sources:
        src = Path(src).resolve()
        if _inside(where, src) or _inside(src, where):
            raise ValueError(
                f"{flag} {out} overlaps what the command reads ({src}); choose a folder outside it"
            )
    if not path.exists():
        return path
    if not path.is_dir():
        raise ValueError(f"{flag} {out} is a file, not a folder; choose a new folder")
    if not any(path.iterdir()):
        return path
    name, recognise = KINDS[kind]
    if not recognise(path):
        raise ValueError(
            f"{flag} {out} exists and holds files pixeldance did not write (it is not {name}); "
            "nothing was changed: choose a new or empty folder"
        )
    if not overwrite and not add_to:
        raise ValueError(
            f"{flag} {out} is {name} already; pass --overwrite to replace it, or choose a "
            "new folder"
        )
    return path


def user_mode(kind: str = "dir") -> int:
    """The permission bits a new folder (or file) gets under the user's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if kind == "dir" else 0o666) & ~mask


@contextmanager
def replacing(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; when the block succeeds, swap it in as
    ``out`` (an existing ``out``, checked by :func:`check_destination`, is removed only after
    the new one is in place). On any error or interrupt the temporary folder is removed and
    ``out`` is untouched."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    old: Path | None = None
    try:
        os.chmod(tmp, user_mode())
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():  # put the previous one back
            os.replace(old / out.name, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
