"""Data start-up at WebVid scale: time and memory for one rank to open a 10M-row manifest.

Writes a synthetic manifest in WebVid's own format (``videoid, contentUrl, duration,
page_dir, name``; no height/width columns; captions with commas, quotes and non-ASCII text),
then, in fresh processes, builds the real training data stream of ``configs/sd15_webvid.yaml``
(one 256x256 bucket, 6 clips per process) for rank 0 of 32 processes and takes its first batch:

- cold: the first start, which parses the manifest into its index (once; later starts and
  other ranks only map it);
- warm: a later start; resume: a later start at optimizer step ``--resume-step``.

The video files do not exist: the first batch is requested for real, its clips fail as
missing files and are counted (decoding is what ``data_speed.py`` measures). ``startup_s`` is
the cold start, from the call that builds the stream to its first batch, not counting Python
and torch imports (``import_s``); ``rss_mb_per_rank`` is the largest peak resident memory of
the cold and warm processes (imports included; ``rss_after_import_mb`` is the part before any
data was touched). Last line: one JSON object.

    python benchmarks/manifest_scale.py                 # 10M rows in a temporary folder
    python benchmarks/manifest_scale.py --rows 200000 --out /tmp/webvid --keep
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sd15_webvid.yaml"
WORDS = (
    "aerial shot of a winter forest with snow slow motion close up woman smiling at camera "
    "city skyline at night traffic timelapse young man running on the beach sunset golden "
    "hour waves crashing rocks drone flight over mountains river valley cat playing with a "
    "toy dog happy family kitchen cooking vegetables hands typing keyboard office business"
).split() + ["café", "naïve", "東京", "'quoted'", '"double"', "a, b", "São Paulo"]


def caption_pool(size: int, seed: int) -> list[str]:
    """CSV-quoted captions of 4 to 16 words, some with commas, quotes and non-ASCII words."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(size):
        words = rng.choice(WORDS, size=rng.integers(4, 17))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([" ".join(words).capitalize()])
        out.append(buf.getvalue())
    return out


SIZES = (",336,596", ",596,336", ",480,480")  # landscape, portrait, square


def write_webvid_csv(
    path: Path, rows: int, sizes: bool = False, seed: int = 0, chunk: int = 100_000
) -> float:
    """A WebVid-format manifest of ``rows`` rows (with ``height, width`` columns appended if
    ``sizes``); returns its size in MB."""
    rng = np.random.default_rng(seed)
    pool = caption_pool(20_000, seed)
    slugs = ["-".join(re.findall(r"\w+", c.lower()))[:60] for c in pool]
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(
            "videoid,contentUrl,duration,page_dir,name" + (",height,width\n" if sizes else "\n")
        )
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = 1_000_000 + start + np.arange(n)
            caps = rng.integers(0, len(pool), n).tolist()
            secs = rng.integers(5, 60, n).tolist()
            shape = rng.integers(0, len(SIZES), n).tolist() if sizes else [None] * n
            f.write(
                "".join(
                    f"{v},https://ak.picdn.net/shutterstock/videos/{v}/preview/stock-footage-"
                    f"{slugs[c]}.mp4,PT00H00M{s:02d}S,{v // 50 * 50:09d}_{v // 50 * 50 + 50:09d},"
                    f"{pool[c]}{'' if z is None else SIZES[z]}\n"
                    for v, c, s, z in zip(ids.tolist(), caps, secs, shape, strict=True)
                )
            )
    return path.stat().st_size / 2**20


def rss_now_mb() -> dict:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


THREE_BUCKETS = (
    "data.buckets=[{name: square, height: 256, width: 256, frames: 16, batch_size: 6},"
    " {name: landscape, height: 192, width: 320, frames: 16, batch_size: 6},"
    " {name: portrait, height: 320, width: 192, frames: 16, batch_size: 6}]"
)


def measure(manifest: str, start_step: int, world: int, three_buckets: bool) -> dict:
    """One rank's start-up, in this (fresh) process."""
    t0 = time.perf_counter()
    from pixeldance.train.config import load_config
    from pixeldance.train.stream import make_stream

    import_s = time.perf_counter() - t0
    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    overrides = [f"data.manifest={manifest}", "data.images=null", "data.num_workers=0"]
    cfg = load_config(CONFIG, overrides + ([THREE_BUCKETS] if three_buckets else []))
    t1 = time.perf_counter()
    stream, _ = make_stream(cfg, start_step, rank=0, world=world)
    built_s = time.perf_counter() - t1
    step, kind, batch = next(stream)
    startup_s = time.perf_counter() - t1
    return {
        "import_s": round(import_s, 2),
        "stream_built_s": round(built_s, 2),
        "startup_s": round(startup_s, 2),
        "first_batch": {"step": step, "kind": kind, "missing_files": len(batch.bad)},
        "rss_after_import_mb": round(rss_import, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_at_end_mb": rss_now_mb(),
    }


def run_child(manifest: Path, start_step: int, args) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": args.src or str(ROOT / "src")}
    cmd = [sys.executable, __file__, "--measure", str(manifest), "--resume-step", str(start_step)]
    cmd += ["--world", str(args.world)] + (["--sizes"] if args.sizes else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"measuring process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--out", help="folder for the manifest (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the manifest and its index")
    ap.add_argument("--world", type=int, default=32, help="processes the rank belongs to")
    ap.add_argument("--resume-step", type=int, default=150_000)
    ap.add_argument(
        "--sizes",
        action="store_true",
        help="write height/width columns and train on three aspect-ratio buckets",
    )
    ap.add_argument("--src", help="the pixeldance source folder to measure (default: this one's)")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.resume_step, args.world, args.sizes)))
        return
    folder = Path(args.out or tempfile.mkdtemp(prefix="manifest_scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "results_10M_train.csv"
    try:
        t = time.perf_counter()
        csv_mb = write_webvid_csv(manifest, args.rows, args.sizes)
        write_s = time.perf_counter() - t
        print(f"wrote {args.rows} rows ({csv_mb:.0f} MB) in {write_s:.1f} s", file=sys.stderr)
        shutil.rmtree(folder / f".{manifest.name}.index", ignore_errors=True)
        cold = run_child(manifest, 0, args)
        warm = run_child(manifest, 0, args)
        resume = run_child(manifest, args.resume_step, args)
        for name, r in (("cold", cold), ("warm", warm), ("resume", resume)):
            print(name, json.dumps(r), file=sys.stderr)
        index = folder / f".{manifest.name}.index"
        index_mb = sum(p.stat().st_size for p in index.iterdir()) if index.is_dir() else 0
        result = {
            "rows": args.rows,
            "buckets": 3 if args.sizes else 1,
            "csv_mb": round(csv_mb),
            "index_mb": round(index_mb / 2**20),
            "startup_s": cold["startup_s"],
            "warm_startup_s": warm["startup_s"],
            "resume_startup_s": resume["startup_s"],
            "resume_step": args.resume_step,
            "import_s": warm["import_s"],
            "rss_mb_per_rank": max(cold["peak_rss_mb"], warm["peak_rss_mb"]),
            "warm_rss_mb": warm["peak_rss_mb"],
            "rss_after_import_mb": warm["rss_after_import_mb"],
            "missing_files_in_first_batch": cold["first_batch"]["missing_files"],
            "load_avg_1min": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(result))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
