"""``pixeldance make-shapes``, ``check-data`` and ``preprocess``: data commands. Every count,
rate and path is checked before any work, and a cache is written to a temporary folder and
renamed into place only when it holds something."""

from __future__ import annotations

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
    m.set_defaults(func=_cmd_make_shapes)

    c = sub.add_parser("check-data", help="scan a manifest and report bad files without training")
    c.add_argument("manifest")
    c.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    c.add_argument("--fps", type=float, default=4.0, help="frames per second (default 4)")
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--strict", action="store_true", help="exit 1 if any file is bad")
    c.set_defaults(func=_cmd_check_data)

    pp = sub.add_parser("preprocess", help="encode clips and captions once into a latent cache")
    pp.add_argument("--config", help="YAML config (model and buckets)")
    pp.add_argument("--data", help="manifest of videos (default: the config's)")
    pp.add_argument("--images", help="captioned images (default: the config's)")
    pp.add_argument(
        "--out",
        required=True,
        help="a new (or empty) folder for the cache; a cache preprocess wrote is replaced only "
        "with --overwrite",
    )
    pp.add_argument("--overwrite", action="store_true", help="replace --out if preprocess wrote it")
    pp.add_argument("--clips-per-video", type=int, default=1)
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
    out = destination(args.out, "dataset", args.overwrite)
    from ..files import check_free_space

    images = args.num // 2 if args.images is None else args.images
    try:  # before any work: a count the disk cannot hold is refused, not half written
        check_free_space(out / "manifest.csv", args.num * CLIP_BYTES + images * IMAGE_BYTES)
    except ValueError as err:
        raise UsageError(f"--num {args.num}: {err}") from err
    work_started()
    from ..data.shapes import write_dataset
    from ..owned import replacing

    with replacing(out) as tmp:
        write_dataset(
            tmp,
            args.num,
            args.seed,
            num_images=args.images,
            workers=args.workers,
            mover_share=args.mover_share,
        )
    print(f"wrote {args.num} clips to {args.out} (manifest.csv, images.csv, params/)")
    return 0


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


def _cmd_preprocess(args) -> int:
    from ..data.manifest_index import manifest_problem
    from ..devices import PlacementError, resolve_placement
    from ..train.config import load_config
    from ..train.config_check import check_clip_lengths, check_config
    from ..train.stages import bucket_sets

    at_least("--clips-per-video", args.clips_per_video, 1)
    out = destination(args.out, "cache", args.overwrite)
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
    from ..data.latents import preprocess
    from ..owned import replacing
    from ..train.setup import build_components, prompt_encoder

    comps = build_components(cfg)
    with replacing(out) as tmp:
        index = preprocess(
            tmp,
            comps.vae,
            prompt_encoder(comps),
            sets,
            manifest=manifest,
            images=images,
            fps=cfg.data.fps,
            clips_per_video=args.clips_per_video,
            seed=cfg.run.seed,
            device=placement.device,
            dtype=placement.torch_dtype,
        )
        n = sum(s["count"] for s in index["shards"])
        if n == 0:
            bad = sum(index["bad_files"].values())
            raise WorkFailed(
                f"nothing could be encoded ({bad} bad files: {index['bad_files']}); no cache "
                f"written. Run `pixeldance check-data {manifest}` to see what is wrong"
            )
    print(
        f"wrote {n} cached samples in {len(index['shards'])} shards to {out}; "
        f"bad files: {index['bad_files']}"
    )
    return 0
