"""Build the offline kit: one folder, uploaded to a GPU node without internet, then one line.

The folder holds what such a node lacks (it has Python, a CUDA PyTorch and, unless told
otherwise, numpy and Pillow): wheels of diffusers, transformers, accelerate, einops and what
they need (pure Python or manylinux, for the node's Python), the project's own wheel (with
the shipped model), the shipped model's text states for the checks' prompts
(``prompt_states.safetensors``, so no text-encoder weights travel), and the check scripts
(``kit_checks.py``, ``gpu_smoke.py``, ``fast_compare.py``, ``shapes_scores.py``). It must
fit in 64 MiB; the install-and-run line (``RUN.txt``) in 2,000 characters. The line installs
with ``pip install --no-index --no-deps --target`` from the folder alone and writes the result
files (``kit_results.jsonl`` and a PNG) to ``$OUT``.

    python scripts/offline_kit.py KIT [--python-version 3.12] [--node-has numpy pillow]
    python scripts/offline_kit.py KIT --dry-run     # build in a temporary folder, list, check

Prints each file with its size, the total, the line, and a last JSON line with the checks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 64 * 2**20  # the node's upload quota
LIMIT_CHARS = 2000  # one command line on the node
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
# what the kit installs besides the project: pinned to the versions tested here
PINNED = ("diffusers", "transformers", "safetensors", "einops", "pyyaml", "tqdm")
CHECK_FILES = (
    "scripts/kit_checks.py",
    "benchmarks/gpu_smoke.py",
    "benchmarks/fast_compare.py",
    "benchmarks/shapes_scores.py",
)
# run from the folder that holds the kit; OUT: where the result files go (default kit/results)
RUN_LINE = (
    "cd {kit} && python -m pip install -q --no-index --no-deps --target .site wheels/*.whl "
    '&& PYTHONPATH=$PWD/.site:$PWD python kit_checks.py --out "${{OUT:-results}}"{cpu}'
)


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def resolve(python_version: str, node_has: set[str], work: Path) -> list[str]:
    """name==version of every wheel to bring: the pinned packages and what they need, less
    what the node has (torch never travels; accelerate goes without its torch requirement)."""
    report = work / "report.json"
    reqs = [f"{name}=={version(name)}" for name in PINNED] + ["psutil"]
    pip(
        "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report),
        "--only-binary", ":all:", "--python-version", python_version,
        *[a for p in PLATFORMS for a in ("--platform", p)],
        "--target", str(work / "unused"), *reqs,
    )  # fmt: skip
    items = json.loads(report.read_text())["install"]
    names = [(i["metadata"]["name"], i["metadata"]["version"]) for i in items]
    skip = {n.lower().replace("_", "-") for n in node_has | {"torch"}}
    keep = [f"{n}=={v}" for n, v in names if n.lower().replace("_", "-") not in skip]
    return keep + [f"accelerate=={version('accelerate')}"]


def build(kit: Path, python_version: str, node_has: set[str], cpu: bool) -> dict:
    wheels = kit / "wheels"
    wheels.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        specs = resolve(python_version, node_has, Path(tmp))
    pip(
        "download", "-q", "--no-deps", "--only-binary", ":all:", "--python-version", python_version,
        *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(wheels), *specs,
    )  # fmt: skip
    pip("wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT))
    for f in CHECK_FILES:
        shutil.copy(ROOT / f, kit / Path(f).name)
    write_prompt_states(kit / "prompt_states.safetensors")
    line = RUN_LINE.format(kit=kit.name, cpu=" --cpu" if cpu else "")
    (kit / "RUN.txt").write_text(line + "\n")
    files = {
        str(f.relative_to(kit)): f.stat().st_size for f in sorted(kit.rglob("*")) if f.is_file()
    }
    return {"line": line, "files": files}


def write_prompt_states(path: Path) -> None:
    """The shipped model's text states (float32, from the real encoder) of the checks' prompts."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from kit_checks import PROMPTS
    from safetensors.torch import save_file

    from pixeldance import PixelDancePipeline
    from pixeldance.folders import shipped_model_path

    pipe = PixelDancePipeline.from_pretrained(shipped_model_path())
    enc = pipe.prompt_encoder
    ids = enc.tokenizer(
        list(PROMPTS), padding="max_length", max_length=enc.max_length, truncation=True,
        return_tensors="pt",
    ).input_ids  # fmt: skip
    states = enc.encode(list(PROMPTS)).float().contiguous()
    save_file({"input_ids": ids.contiguous(), "states": states}, str(path))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kit", help="the kit folder to create (must not exist)")
    p.add_argument("--python-version", default="3.12", help="the node's Python (default 3.12)")
    p.add_argument(
        "--node-has",
        nargs="*",
        default=["numpy", "pillow"],
        help="packages the node already has besides torch (default: numpy pillow)",
    )
    p.add_argument("--cpu", action="store_true", help="the line runs the checks' CPU mode")
    p.add_argument(
        "--dry-run", action="store_true", help="build in a temporary folder, list, check"
    )
    args = p.parse_args()
    kit = Path(args.kit)
    if kit.exists() and not args.dry_run:
        print(f"error: {kit} exists; the kit goes to a new folder", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "kit" if args.dry_run else kit
        built = build(target, args.python_version, set(args.node_has), args.cpu)
    total = sum(built["files"].values())
    for name, size in built["files"].items():
        print(f"{size / 2**20:8.2f} MiB  {name}")
    print(f"{total / 2**20:8.2f} MiB  in all (limit {LIMIT_BYTES / 2**20:.0f} MiB)")
    print(built["line"])
    checks = {
        "total_bytes": total,
        "fits_64_mib": total <= LIMIT_BYTES,
        "line_chars": len(built["line"]),
        "line_fits": len(built["line"]) <= LIMIT_CHARS,
        "python_version": args.python_version,
        "node_has": ["torch", *args.node_has],
        "dry_run": args.dry_run,
    }
    print(json.dumps(checks))
    return 0 if checks["fits_64_mib"] and checks["line_fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
