"""Data start-up at WebVid scale: time and memory for one rank to open a 10M-row manifest.

Writes a synthetic manifest in WebVid's own format (``videoid, contentUrl, duration,
page_dir, name``; no height/width columns; captions with commas, quotes and non-ASCII text),
then, in fresh processes, builds the real training data stream of ``configs/sd15_webvid.yaml``
(one 256x256 bucket, 6 clips per process, the config's ``data.num_workers`` DataLoader workers
unless ``--workers``) for rank 0 of 32 processes and takes its first batches:

- cold: the first start, which parses the manifest into its index (once; later starts and
  other ranks only map it);
- warm: a later start; resume: a later start at optimizer step ``--resume-step``.

The video files do not exist: the batches are requested for real, their clips fail as
missing files and are counted (decoding is what ``data_speed.py`` measures). ``startup_s`` is
the cold start, from the call that builds the stream to its first batch, not counting Python
and torch imports (``import_s``). Memory is that of the whole rank: its process and its
DataLoader worker processes, sampled every 0.1 s from ``/proc/PID/smaps_rollup`` while the
stream starts and delivers ``workers + 1`` batches (each worker delivers at least one, with
its prefetch under way), summed over the processes: ``pss_mb_per_rank`` the proportional set
size (pages shared by several processes, such as the forked torch libraries and the
memory-mapped index, counted once in all), ``rss_mb_per_rank`` the resident set size (shared
pages counted in every process). Both are the largest sum over the cold, warm and resume
processes. The rank's own process alone: ``main_pss_mb`` (its share at the largest sum),
``main_peak_rss_mb`` (its peak, imports included) and ``rss_after_import_mb`` (the part
before any data was touched). Last line: one JSON object.

    python benchmarks/manifest_scale.py                 # 10M rows in a temporary folder
    python benchmarks/manifest_scale.py --rows 200000 --workers 2 --out /tmp/webvid --keep
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
import threading
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


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and by those (DataLoader workers), recursively."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:  # the task ended
                continue
            found += kids
            todo += kids
    return found


def smaps_mb(pid: int) -> tuple[float, float] | None:
    """``(Rss, Pss)`` of a process in MB from its smaps_rollup (None if it has ended)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = {k: int(v.split()[0]) for k, _, v in (ln.partition(":") for ln in text.splitlines()[1:])}
    return kb["Rss"] / 1024, kb["Pss"] / 1024


class RankMemory:
    """Samples the summed RSS and PSS of this process and its descendants in a thread."""

    def __init__(self, every: float = 0.1):
        self.every = every
        self.peak = {"rss": 0.0, "pss": 0.0, "main_pss": 0.0, "processes": 1}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self) -> None:
        pids = [os.getpid(), *descendants(os.getpid())]
        found = [m for m in map(smaps_mb, pids) if m is not None]
        rss, pss = sum(m[0] for m in found), sum(m[1] for m in found)
        if pss > self.peak["pss"]:  # the rank's own share at that moment beside the sum
            self.peak = {"rss": rss, "pss": pss, "main_pss": found[0][1], "processes": len(found)}
        self.peak["rss"] = max(self.peak["rss"], rss)

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.sample()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sample()
        self.stop.set()
        self.thread.join()


THREE_BUCKETS = (
    "data.buckets=[{name: square, height: 256, width: 256, frames: 16, batch_size: 6},"
    " {name: landscape, height: 192, width: 320, frames: 16, batch_size: 6},"
    " {name: portrait, height: 320, width: 192, frames: 16, batch_size: 6}]"
)


def measure(manifest: str, start_step: int, world: int, three_buckets: bool, workers: int) -> dict:
    """One rank's start-up, in this (fresh) process, with ``workers`` DataLoader workers."""
    t0 = time.perf_counter()
    from pixeldance.train.config import load_config
    from pixeldance.train.stream import make_stream

    import_s = time.perf_counter() - t0
    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    overrides = [f"data.manifest={manifest}", "data.images=null", f"data.num_workers={workers}"]
    cfg = load_config(CONFIG, overrides + ([THREE_BUCKETS] if three_buckets else []))
    with RankMemory() as memory:
        t1 = time.perf_counter()
        stream, _ = make_stream(cfg, start_step, rank=0, world=world)
        built_s = time.perf_counter() - t1
        step, kind, batch = next(stream)
        startup_s = time.perf_counter() - t1
        missing = len(batch.bad)
        for _ in range(workers):  # every worker's first batch; their prefetch is under way
            missing += len(next(stream)[2].bad)
        memory.sample()  # all workers alive, before the stream is dropped
    return {
        "import_s": round(import_s, 2),
        "stream_built_s": round(built_s, 2),
        "startup_s": round(startup_s, 2),
        "first_batch": {"step": step, "kind": kind, "missing_files": len(batch.bad)},
        "batches": workers + 1,
        "missing_files": missing,
        "workers": workers,
        "processes": memory.peak["processes"],
        "pss_mb": round(memory.peak["pss"], 1),
        "main_pss_mb": round(memory.peak["main_pss"], 1),
        "rss_mb": round(memory.peak["rss"], 1),
        "rss_after_import_mb": round(rss_import, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_at_end_mb": rss_now_mb(),
    }


def config_workers() -> int:
    """The config's ``data.num_workers`` (read with the YAML parser, without importing torch)."""
    import yaml

    return int(yaml.safe_load(CONFIG.read_text())["data"].get("num_workers", 0))


def run_child(manifest: Path, start_step: int, args) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": args.src or str(ROOT / "src")}
    cmd = [sys.executable, __file__, "--measure", str(manifest), "--resume-step", str(start_step)]
    cmd += ["--world", str(args.world), "--workers", str(args.workers)]
    cmd += ["--sizes"] if args.sizes else []
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
    ap.add_argument(
        "--workers",
        type=int,
        help="DataLoader workers of the rank (default: the config's data.num_workers)",
    )
    ap.add_argument("--src", help="the pixeldance source folder to measure (default: this one's)")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.workers is None:
        args.workers = config_workers()
    if args.workers < 0:
        ap.error(f"--workers must be 0 or more, got {args.workers}")
    if args.measure:
        found = measure(args.measure, args.resume_step, args.world, args.sizes, args.workers)
        print(json.dumps(found))
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
            "workers": args.workers,
            "processes_per_rank": cold["processes"],
            "pss_mb_per_rank": max(r["pss_mb"] for r in (cold, warm, resume)),
            "rss_mb_per_rank": max(r["rss_mb"] for r in (cold, warm, resume)),
            "warm_pss_mb": warm["pss_mb"],
            "main_pss_mb": max(cold["main_pss_mb"], warm["main_pss_mb"]),
            "main_peak_rss_mb": max(cold["peak_rss_mb"], warm["peak_rss_mb"]),
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
