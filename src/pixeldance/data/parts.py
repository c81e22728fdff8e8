"""Where ``pixeldance preprocess`` keeps its work until the cache is made: the work folder
beside the cache, its plan, its finished parts, and the merge of the parts into one cache.

``{out}.preprocess-work/`` holds ``plan.json`` (what is being made: parts of another plan are
never mixed in), ``empty_text.safetensors`` and one ``part-NNNNNN/`` folder per finished part
(its shards, then ``part.json`` last). The merge hard-links every part's shards, in part order,
into a new folder that :func:`pixeldance.owned.replacing` swaps in as the cache, then removes
the work folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .buckets import Bucket
from .latents import write_index

WORK_SUFFIX = ".preprocess-work"
PLAN = "plan.json"
FORMAT = 1


class NothingEncoded(RuntimeError):
    """Every item was a bad file: no cache is written."""


def work_folder(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.parent / f"{out.name}{WORK_SUFFIX}"


def part_folder(work: Path, p: int) -> Path:
    return work / f"part-{p:06d}"


def part_done(work: Path, p: int) -> bool:
    return (part_folder(work, p) / "part.json").is_file()


def _file_id(path) -> dict | None:
    if path is None:
        return None
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def make_plan(items: int, part_size: int, flat: list[Bucket], info: dict, **inputs) -> dict:
    """What a work folder's parts are made of; two runs may share parts only if equal."""
    inputs = {k: _file_id(v) if k in ("manifest", "images") else v for k, v in inputs.items()}
    key = json.dumps({"inputs": inputs, "info": info, "part_size": part_size}, sort_keys=True)
    return {
        "pixeldance_preprocess": FORMAT,
        "fingerprint": hashlib.sha256(key.encode()).hexdigest()[:16],
        "items": items,
        "part_size": part_size,
        "parts": -(-items // part_size),
        "buckets": [vars(b) for b in flat],
        "info": info,
        "inputs": inputs,
    }


def read_plan(work: Path) -> dict | None:
    try:
        plan = json.loads((work / PLAN).read_text())
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) and "pixeldance_preprocess" in plan else None


def open_work(work: Path, plan: dict, restart: bool) -> int:
    """Make the work folder for ``plan``, or continue the one there; returns the parts already
    done. A folder of another plan is started again only if ``restart``, else refused (as is
    a folder this command did not write)."""
    if work.exists():
        found = read_plan(work)
        if found is None:
            raise ValueError(
                f"{work} exists but is not a preprocess work folder (no {PLAN}); move it away"
            )
        if found["fingerprint"] != plan["fingerprint"] and not restart:
            raise ValueError(
                f"{work} holds the parts of another preprocess (other data, config or part "
                "size); pass --overwrite to start again, or give the command that made them"
            )
        if found["fingerprint"] != plan["fingerprint"]:
            shutil.rmtree(work)
    from ..files import atomic_path

    work.mkdir(parents=True, exist_ok=True)
    if read_plan(work) is None:
        with atomic_path(work / PLAN) as tmp:
            tmp.write_text(json.dumps(plan, indent=1))
    return sum(part_done(work, p) for p in range(plan["parts"]))


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


def merge_parts(out: str | os.PathLike) -> dict:
    """Build the cache ``out`` from a complete work folder (swapped in whole), then remove the
    work folder. Raises ValueError if parts are missing, NothingEncoded if nothing was."""
    from ..owned import replacing

    out = Path(out)
    work = work_folder(out)
    plan = read_plan(work)
    if plan is None:
        raise ValueError(f"no preprocess parts to merge: {work} is missing or not a work folder")
    missing = [p for p in range(plan["parts"]) if not part_done(work, p)]
    if missing:
        raise ValueError(
            f"{len(missing)} of {plan['parts']} parts are not done yet (e.g. "
            f"{part_folder(work, missing[0]).name} in {work}); run the jobs that make them "
            "first (the same command continues where it stopped)"
        )
    metas = [json.loads((part_folder(work, p) / "part.json").read_text()) for p in range(plan["parts"])]  # fmt: skip
    bad: dict[str, int] = {}
    for meta in metas:
        for reason, n in meta["bad_files"].items():
            bad[reason] = bad.get(reason, 0) + n
    if not sum(m["count"] for m in metas):
        shutil.rmtree(work)
        raise NothingEncoded(
            f"nothing could be encoded ({sum(bad.values())} bad files: {bad}); no cache written"
        )
    with replacing(out) as tmp:
        shards = []
        for p, meta in enumerate(metas):
            for s in meta["shards"]:
                name = f"{s['kind']}-{len(shards):06d}.safetensors"
                _link(part_folder(work, p) / s["file"], tmp / name)
                shards.append({**s, "file": name})
        _link(work / "empty_text.safetensors", tmp / "empty_text.safetensors")
        info = {"bad_files": bad, **plan["info"]}
        write_index(tmp, shards, [Bucket(**b) for b in plan["buckets"]], info)
    shutil.rmtree(work)
    return json.loads((out / "index.json").read_text())
