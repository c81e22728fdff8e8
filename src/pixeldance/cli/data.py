"""``pixeldance make-shapes``, ``check-data`` and ``preprocess``: data commands. Every count,
rate and path is checked before any work. A cache is made in parts in a work folder beside it
(:mod:`pixeldance.data.preprocess`) and swapped into place only when it holds something."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .common import (
    UsageError,
    WorkFailed,
    add_placement_args,
    at_least,
    destination,
    flag_error,
    input_file,
    work_started,
)


def add_data_parsers(sub) -> None:
    m = sub.add_parser(
        "make-shapes", help="write a Dancing Shapes dataset (mp4 + manifest + ground truth)"
    )
    m.add_argument(
        "--out",
        required=True,
        help="a new (or empty) folder; a dataset make-shapes wrote is replaced only with "
        "--overwrite",
    )
    m.add_argument("--overwrite", action="store_true", help="replace --out if make-shapes wrote it")
    m.add_argument("--num", type=int, required=True, help="number of clips (at least 1)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--images", type=int, help="number of captioned stills (default: num / 2)")
    m.add_argument("--workers", type=int, default=1)
    m.add_argument(
        "--mover-share",
        type=float,
        default=0.0,
        metavar="P",
        help="share of the clips (0-1) drawn as single movers under a still camera "
        "(the world's own mix has about 8%%); default 0: the world as it is",
    )
    m.add_argument(
        "--shapes",
        metavar="NAMES",
        help="comma-separated shapes to draw (default: the world's circle, square, triangle, "
        "diamond, star); 'hexagon' is a shape the shipped model never saw (for fine-tuning)",
    )
    m.add_argument(
        "--motions",
        metavar="NAMES",
        help="comma-separated motions to draw, a name given twice drawn twice as often (default: "
        "the world's mix of move, bounce, grow, shrink, rotate); 'fade' (the object fades away) is "
        "a motion the shipped model never saw (for fine-tuning)",
    )
    m.add_argument(
        "--motion-share",
        type=float,
        default=1.0,
        metavar="P",
        help="share of the clips (0-1) drawn with --motions; the others are the world's own "
        "(default 1: all of them)",
    )
    m.set_defaults(func=_cmd_make_shapes)

    c = sub.add_parser("check-data", help="scan a manifest and report bad files without training")
    c.add_argument("manifest")
    c.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    c.add_argument("--fps", type=float, default=4.0, help="frames per second (default 4)")
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--strict", action="store_true", help="exit 1 if any file is bad")
    c.set_defaults(func=_cmd_check_data)

    pp = sub.add_parser(
        "preprocess",
        help="encode clips and captions once into a latent cache",
        description="Encode a manifest's clips (and captioned images) once into a latent cache. "
        "Under torchrun or accelerate launch every process encodes its share and the first "
        "merges them; jobs started apart take --rank/--world-size and are merged with --merge. "
        "Work in progress lives in OUT.preprocess-work/ beside --out (finished parts only: a "
        "part being written is removed on Ctrl-C or SIGTERM); the same command continues from "
        "it, and removes it once the cache is made.",
    )
    pp.add_argument("--config", help="YAML config (model and buckets)")
    pp.add_argument("--data", help="manifest of videos (default: the config's)")
    pp.add_argument("--images", help="captioned images (default: the config's)")
    pp.add_argument(
        "--out",
        required=True,
        help="a new (or empty) folder for the cache; a cache preprocess wrote is replaced only "
        "with --overwrite",
    )
    pp.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if preprocess wrote it, and start again if OUT.preprocess-work/ "
        "holds the parts of another preprocess",
    )
    pp.add_argument("--clips-per-video", type=int, default=1)
    pp.add_argument(
        "--workers", type=int, default=0, help="decoding processes per rank (0: decode inline)"
    )
    pp.add_argument(
        "--part-size",
        type=int,
        default=256,
        help="items per part, the unit of splitting and resuming (default 256)",
    )
    pp.add_argument(
        "--rank", type=int, help="with --world-size: this job's share, for jobs started apart"
    )
    pp.add_argument("--world-size", type=int, help="the number of jobs started apart")
    pp.add_argument(
        "--merge",
        action="store_true",
        help="only merge the finished parts in OUT.preprocess-work/ into the cache --out",
    )
    pp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add_placement_args(pp, offload=False)
    pp.set_defaults(func=_cmd_preprocess)


# lower bounds of what make-shapes writes (measured: about 34 KB a clip with its parameters,
# 3 KB a still), so a refusal for space is certain
CLIP_BYTES, IMAGE_BYTES = 20_000, 1_000


def check_workers(workers: int) -> None:
    """``--workers`` from 1 to four processes a CPU core (more only slows a machine down)."""
    import os

    at_least("--workers", workers, 1)
    most = 4 * (os.cpu_count() or 1)
    if workers > most:
        raise UsageError(f"--workers must be from 1 to {most} (4 a CPU core), got {workers}")


def _cmd_make_shapes(args) -> int:
    at_least("--num", args.num, 1)
    at_least("--images", args.images, 0)
    check_workers(args.workers)
    if not 0.0 <= args.mover_share <= 1.0:
        raise UsageError(f"--mover-share must be between 0 and 1, got {args.mover_share}")
    if not 0.0 <= args.motion_share <= 1.0:
        raise UsageError(f"--motion-share must be between 0 and 1, got {args.motion_share}")
    if args.motion_share != 1.0 and not args.motions:
        raise UsageError("--motion-share needs --motions (the motions to draw in that share)")
    from ..data.shapes_dataset import write_dataset

    shapes = _choices("--shapes", "shape", args.shapes)
    motions = _choices("--motions", "motion", args.motions)
    out = destination(args.out, "dataset", args.overwrite)
    from ..files import check_free_space

    images = args.num // 2 if args.images is None else args.images
    try:  # before any work: a count the disk cannot hold is refused, not half written
        check_free_space(out / "manifest.csv", args.num * CLIP_BYTES + images * IMAGE_BYTES)
    except ValueError as err:
        raise UsageError(f"--num {args.num}: {err}") from err
    work_started()
    from ..owned import replacing

    with replacing(out) as tmp:
        write_dataset(
            tmp,
            args.num,
            args.seed,
            num_images=args.images,
            workers=args.workers,
            mover_share=args.mover_share,
            shapes=shapes,
            motions=motions,
            motion_share=args.motion_share,
        )
    print(f"wrote {args.num} clips to {args.out} (manifest.csv, images.csv, params/)")
    return 0


def _choices(flag: str, kind: str, text: str | None) -> tuple[str, ...] | None:
    """A comma-separated list of the world's shapes or motions, checked; None if not given."""
    from ..data.shapes import CHOICES, unknown_choice

    if not text:
        return None
    names = tuple(s.strip() for s in text.split(","))
    if not all(names):
        raise UsageError(
            f"{flag}: an empty name in {text!r}; choose from {', '.join(CHOICES[kind])}"
        )
    problem = unknown_choice(kind, names)
    if problem:
        raise UsageError(f"{flag}: {problem}")
    return names


def _cmd_check_data(args) -> int:
    at_least("--frames", args.frames, 1)
    check_workers(args.workers)
    if not args.fps > 0:
        raise UsageError(f"--fps must be greater than 0, got {args.fps}")
    input_file(args.manifest, "manifest")
    from ..data.manifest_index import manifest_problem

    problem = manifest_problem(args.manifest)
    if problem:
        raise UsageError(problem)
    work_started()
    from ..data.check import check_manifest

    report = check_manifest(
        args.manifest, num_frames=args.frames, fps=args.fps, workers=args.workers
    )
    print(report.summary())
    return 1 if report.bad and args.strict else 0


def _launch(args) -> tuple[int, int, bool]:
    """(rank, world size, started together): --rank/--world-size for jobs started apart, else
    a launcher's RANK/WORLD_SIZE (torchrun, accelerate launch), else one process."""
    import os

    if args.rank is not None or args.world_size is not None:
        if args.rank is None or args.world_size is None:
            raise UsageError("--rank and --world-size go together")
        at_least("--world-size", args.world_size, 1)
        if not 0 <= args.rank < args.world_size:
            raise UsageError(f"--rank must be from 0 to {args.world_size - 1}, got {args.rank}")
        return args.rank, args.world_size, False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world, True) if world > 1 else (0, 1, False)


def _cmd_preprocess(args) -> int:
    from ..data.manifest_index import manifest_problem
    from ..devices import PlacementError, resolve_placement
    from ..train.config import load_config
    from ..train.config_check import check_clip_lengths, check_config
    from ..train.stages import bucket_sets

    at_least("--clips-per-video", args.clips_per_video, 1)
    at_least("--workers", args.workers, 0)
    at_least("--part-size", args.part_size, 1)
    rank, world, together = _launch(args)
    out = destination(args.out, "cache", args.overwrite)
    if args.merge:
        work_started()
        return _merge(out)
    try:
        placement = resolve_placement(args.device, args.dtype)
    except PlacementError as err:
        raise flag_error(err) from err
    if args.config is not None:
        input_file(args.config, "--config")
    cfg = load_config(args.config, args.set)
    check_config(cfg)  # every key, before anything is built
    sets = bucket_sets(cfg)  # one set of buckets per training stage
    manifest = args.data or cfg.data.manifest
    images = args.images or cfg.data.images
    if manifest is None and images is None:
        raise UsageError("nothing to encode: give --data MANIFEST and/or --images, or set them")
    if manifest is not None:
        from ..data.check import image_list_problem

        input_file(manifest, "--data")
        problem = manifest_problem(manifest) or image_list_problem(manifest)
        if problem:
            raise UsageError(problem)
        cfg.data.manifest, cfg.data.latent_cache = manifest, None
        check_clip_lengths(cfg)  # the buckets' frames within the clips'
    if images is not None and not Path(images).exists():
        raise UsageError(f"--images not found: {images}")
    if images is not None and Path(images).is_file():
        problem = manifest_problem(images)
        if problem:
            raise UsageError(problem)
    work_started()
    import torch

    from ..data.preprocess import preprocess
    from ..train.resume import config_hash
    from ..train.setup import build_components, prompt_encoder

    device = placement.device
    if together and torch.device(device).type == "cuda" and torch.device(device).index is None:
        import os

        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    with _process_group(together) as barrier:
        comps = build_components(cfg)
        try:
            index = preprocess(
                out, comps.vae, prompt_encoder(comps), sets, manifest=manifest, images=images,
                fps=cfg.data.fps, clips_per_video=args.clips_per_video, seed=cfg.run.seed,
                device=device, dtype=placement.torch_dtype, progress=rank == 0 or not together,
                rank=rank, world=world, workers=args.workers, part_size=args.part_size,
                restart=args.overwrite, model_key=config_hash(cfg), barrier=barrier,
            )  # fmt: skip
        except _nothing_encoded() as err:
            raise WorkFailed(
                f"{err}. Run `pixeldance check-data {manifest}` to see what is wrong"
            ) from err
        if index is None:
            if not together:
                print(
                    f"rank {rank} of {world}: parts written to {args.out}.preprocess-work; when "
                    f"every job is done: pixeldance preprocess --merge --out {args.out}"
                )
            return 0
        return _report(out, index)


def _nothing_encoded():
    from ..data.preprocess import NothingEncoded

    return NothingEncoded


@contextmanager
def _process_group(together: bool):
    """Processes started together (torchrun): a gloo group for the barriers around the work
    (a long timeout: a rank may finish its share hours before the last one), ended on the way
    out rather than torn down at exit, where a gloo group can abort the process. Yields the
    barrier, or None for a process on its own."""
    if not together:
        yield None
        return
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(days=7))
    try:
        yield dist.barrier
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _merge(out: Path) -> int:
    from ..data.preprocess import NothingEncoded, merge_parts

    try:
        index = merge_parts(out)
    except NothingEncoded as err:
        raise WorkFailed(str(err)) from err
    except ValueError as err:
        raise UsageError(str(err)) from err
    return _report(out, index)


def _report(out: Path, index: dict) -> int:
    n = sum(s["count"] for s in index["shards"])
    print(
        f"wrote {n} cached samples in {len(index['shards'])} shards to {out}; "
        f"bad files: {index['bad_files']}"
    )
    return 0
