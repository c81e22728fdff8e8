"""Preprocessing throughput: clips per second of ``pixeldance preprocess`` on this machine with
0, 1 and 2 decoding workers in one process, and with 2 processes under torchrun.

The manifest repeats the real videos beside the repository (``../shared/data/real/videos``,
720x480 at 8 fps) ``--repeat`` times; the config is ``configs/tiny.yaml`` (the codec
autoencoder and MiniLM: encoding is cheap, so this measures decoding, resizing and the
writing of parts). Each run's rate is its items over the slowest rank's encoding time, read
from the ``-v`` log line ``rank R: N items in T s``; model loading is not counted. Last line:
one JSON object.

    python benchmarks/preprocess_rate.py --repeat 20
    python benchmarks/preprocess_rate.py --repeat 10 --sd-clips   # 16 frames of 256x256
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT.parent / "shared" / "data" / "real" / "videos"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(manifest: Path, out: Path, workers: int, procs: int, overrides: list[str]) -> dict:
    launcher = [sys.executable]
    if procs > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(procs)]
        launcher += ["--master_port", str(_port())]
    cmd = [*launcher, "-m", "pixeldance.cli", "-v", "preprocess", "--config",
           str(ROOT / "configs" / "tiny.yaml"), "--data", str(manifest), "--out", str(out),
           "--workers", str(workers), "--part-size", "16"]  # fmt: skip
    cmd += [x for kv in overrides for x in ("--set", kv)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    ranks = re.findall(r"rank (\d+): (\d+) items in ([\d.]+) s", done.stderr)
    items = sum(int(n) for _, n, _ in ranks)
    seconds = max(float(t) for _, _, t in ranks)
    return {"processes": procs, "workers": workers, "clips": items, "seconds": seconds,
            "clips_per_s": round(items / seconds, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="rows per video")
    parser.add_argument(
        "--sd-clips",
        action="store_true",
        help="clips of the SD configs' shape (16 frames of 256x256) instead of tiny.yaml's 4 of 32x32",
    )
    args = parser.parse_args()
    videos = sorted(VIDEOS.glob("*.mp4"))
    if not videos:
        sys.exit(f"no videos in {VIDEOS}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "m.csv"
        rows = [f"{v},a clip {i}" for i in range(args.repeat) for v in videos]
        manifest.write_text("path,caption\n" + "\n".join(rows) + "\n")
        sd = "data.buckets=[{name: sd, height: 256, width: 256, frames: 16, batch_size: 1}]"
        overrides = [sd] if args.sd_clips else []
        for n, (workers, procs) in enumerate([(0, 1), (1, 1), (2, 1), (0, 2)]):
            results.append(measure(manifest, Path(tmp) / f"cache{n}", workers, procs, overrides))
            print(results[-1], flush=True)
    print(json.dumps({"videos": [v.name for v in videos], "repeat": args.repeat,
                      "sd_clips": args.sd_clips, "runs": results}))  # fmt: skip


if __name__ == "__main__":
    main()
