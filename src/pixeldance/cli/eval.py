"""``pixeldance eval``: generate over a manifest and score, or score a folder of videos.

Every score is printed with its protocol and written to ``{out}/report.json`` and
``{out}/report.md``. The networks are loaded (and their checksums checked) before any video
is generated, so a missing weights file ends the command at once with a one-line error.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .common import UsageError, at_least, destination
from .eval_checks import check_is_splits, clip_count, listing, undo_bookkeeping

EPILOG = """examples:
  pixeldance eval --preset msrvtt --model runs/sd15 --manifest msrvtt/test_videodatainfo.json \\
      --root msrvtt/TestVideo --out eval/msrvtt
  pixeldance eval --preset ucf101 --model runs/sd15 --manifest UCF-101/ --out eval/ucf101
  pixeldance eval --videos my_videos/ --references real_videos/ --out eval/mine
see EVALUATION.md for the protocols, the weights files and the paper's numbers"""


def add_eval_parser(sub) -> None:
    """Register ``eval`` on the ``pixeldance`` sub-command parser."""
    from ..evaluation.protocol import FIRST_FRAME_SOURCES, METRICS, PRESETS

    e = sub.add_parser(
        "eval",
        help="score a model (FVD, CLIPSIM, FID, IS, instruction fidelity) with a printed protocol",
        description="Generate over a manifest and score, or score existing videos; every score "
        "is printed and written (report.json, report.md) with its protocol.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "task",
        nargs="?",
        choices=("convert-weights",),
        help="convert-weights: turn pytorch-fid's Inception, OpenAI's ViT-B-32.pt or an "
        "open_clip checkpoint into what --inception / --clip take (--from, --input, --out)",
    )
    conv = e.add_argument_group("convert-weights")
    conv.add_argument(
        "--from",
        dest="source_format",
        choices=("pytorch-fid-inception", "openai-clip", "open-clip"),
        help="the file's format",
    )
    conv.add_argument("--input", help="the file to convert (read as tensors only)")
    conv.add_argument(
        "--tokenizer", help="CLIP: a CLIP tokenizer folder (vocab.json, merges.txt) to copy"
    )
    conv.add_argument(
        "--activation",
        choices=("quick_gelu", "gelu"),
        help="CLIP: the MLP activation (default: quick_gelu for OpenAI's, gelu for open_clip's)",
    )
    src = e.add_argument_group("what to score")
    src.add_argument(
        "--manifest",
        help="generate one clip per row, then score: CSV/JSONL (prompt, first_frame, last_frame, "
        "reference), MSR-VTT's annotation JSON, or a folder of reference videos",
    )
    src.add_argument(
        "--videos", help="score these videos: a folder, or a manifest (video, prompt, ...)"
    )
    src.add_argument(
        "--references",
        help="reference videos: a folder or a manifest (default: the manifest's reference column)",
    )
    src.add_argument(
        "--root",
        help="folder that relative paths in manifests start from (default: the manifest's)",
    )
    src.add_argument(
        "--out",
        required=True,
        help="folder for the report (and generated videos); convert-weights: the new file/folder",
    )
    src.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="the paper's setup: metrics, counts, sizes and its numbers",
    )
    src.add_argument(
        "--metrics",
        help=f"comma-separated, from {', '.join(METRICS)} (default: the preset's, else all the inputs allow)",
    )
    gen = e.add_argument_group("generating (with --manifest)")
    gen.add_argument(
        "--model", help="pipeline folder (default: the shipped PixelDance-Shapes model)"
    )
    gen.add_argument(
        "--samples",
        type=int,
        help="clips to generate, spread over the rows (default: the preset's, else one per row)",
    )
    gen.add_argument(
        "--first-frame",
        choices=FIRST_FRAME_SOURCES,
        default="manifest",
        help="first-frame instructions: the manifest's column only; else frame 0 of the "
        "reference (ground truth: FVD/FID optimistic); none (text only); t2i (made from the "
        "prompt by --t2i, the paper's protocol); self (the model's own 1-frame image mode)",
    )
    gen.add_argument(
        "--t2i",
        help="with --first-frame t2i: a local diffusers text-to-image folder (Stable Diffusion "
        "2.1 is the paper's) that makes each first frame from its prompt",
    )
    gen.add_argument("--t2i-steps", type=int, default=50, help="text-to-image denoising steps")
    gen.add_argument("--t2i-guidance", type=float, default=7.5, help="text-to-image guidance scale")
    gen.add_argument(
        "--last-frame",
        choices=("manifest", "reference"),
        default="manifest",
        help="last-frame instructions: the manifest's column only; else the reference's frame "
        "at the clip's last index (at the generation frame rate)",
    )
    gen.add_argument(
        "--tau-sweep",
        help="comma-separated taus: generate the samples with a last frame again at each and "
        "report last-frame PSNR/SSIM and motion by tau (keyframe adherence)",
    )
    gen.add_argument(
        "--long",
        type=int,
        metavar="N",
        help="generate N-frame videos by chaining clips and score every --frames chunk of them "
        "(the paper's Fig. 8): long.md, long.json, long.png",
    )
    gen.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    gen.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    gen.add_argument("--tau", type=int, help="last-frame steps (default: the model's)")
    gen.add_argument(
        "--height", type=int, help="pixels (default: the preset's 256, else the model's)"
    )
    gen.add_argument(
        "--width", type=int, help="pixels (default: the preset's 256, else the model's)"
    )
    gen.add_argument("--seed", type=int, default=0, help="sample i is drawn with seed + i")
    sc = e.add_argument_group("scoring")
    sc.add_argument("--frames", type=int, help="frames per clip (default 16, the paper's)")
    sc.add_argument(
        "--fps",
        type=float,
        help="frame rate references are sampled at (default: the generated videos'; under a "
        "preset, each reference's own rate)",
    )
    sc.add_argument(
        "--reference-clips",
        choices=("start", "fvd2048_16f"),
        default="start",
        help="start: one clip per reference video from t = 0; fvd2048_16f: StyleGAN-V's 2048 "
        "random consecutive 16-frame clips (seeded by --seed)",
    )
    sc.add_argument(
        "--reference-count",
        type=int,
        default=2048,
        help="clips drawn under --reference-clips fvd2048_16f (default 2048, StyleGAN-V's; "
        "another count is reported as such)",
    )
    sc.add_argument(
        "--i3d",
        help="i3d_torchscript.pt (default: in $PIXELDANCE_EVAL_WEIGHTS or ~/.cache/pixeldance/evaluation)",
    )
    sc.add_argument(
        "--inception",
        help="inception-2015-12-05.pt (default: in the same folder as the I3D default)",
    )
    sc.add_argument(
        "--c3d",
        help="UCF-101 C3D for the video IS: StyleGAN-V's c3d_ucf101.pt (TorchScript, needs "
        "--trust-weights) or a safetensors state dict (default: in the weights folder)",
    )
    sc.add_argument(
        "--clip",
        help="CLIP folder or hub id, read from local files (default: openai/clip-vit-base-patch32)",
    )
    sc.add_argument(
        "--trust-weights",
        action="store_true",
        help="load weights files whose SHA-256 is not the known one (printed warning)",
    )
    sc.add_argument(
        "--allow-download",
        action="store_true",
        help="let the CLIP model be fetched from the Hugging Face hub",
    )
    sc.add_argument(
        "--cache-dir",
        help="reference statistics cache (default: ~/.cache/pixeldance/reference_stats)",
    )
    sc.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda, cuda:N or mps, as for generate (default: auto); float32 there",
    )
    sc.add_argument("--batch-size", type=int, default=8, help="clips per extractor call")
    sc.add_argument(
        "--is-splits",
        type=int,
        help="Inception Score splits, at most the rows scored (default 10, or fewer rows)",
    )
    sc.add_argument(
        "--is-seed", type=int, default=0, help="seed of the shuffle before the IS splits"
    )
    e.set_defaults(func=_cmd_eval)


def _extractors(args, device: str, frames: int):
    from ..evaluation.score import Extractors
    from ..evaluation.weights import DEFAULT_CLIP, load_c3d, load_clip, load_i3d, load_inception

    return Extractors(
        loaders={
            "i3d": lambda: load_i3d(args.i3d, args.trust_weights, device, frames=frames),
            "inception": lambda: load_inception(args.inception, args.trust_weights, device),
            "c3d": lambda: load_c3d(args.c3d, args.trust_weights, device, frames=frames),
            "clip": lambda: load_clip(args.clip or DEFAULT_CLIP, args.allow_download, device),
        }
    )


def _unique(paths) -> list[Path]:
    return list(dict.fromkeys(p for p in paths if p is not None))


def _cmd_eval(args) -> int:
    if args.task == "convert-weights":
        return _convert(args)
    if bool(args.manifest) == bool(args.videos):
        raise UsageError(
            "give --manifest (generate, then score) or --videos (score existing videos)"
        )
    if args.long is not None and not args.manifest:
        raise UsageError("--long N generates: give --manifest (prompts and instructions)")
    for flag in ("samples", "frames", "batch_size", "is_splits", "reference_count", "long"):
        at_least(f"--{flag.replace('_', '-')}", getattr(args, flag), 1)
    if args.tau_sweep:
        from ..evaluation.adherence import parse_taus

        parse_taus(args.tau_sweep)  # a malformed list fails before any work
    out = destination(args.out, "eval", add_to=True)  # new, empty, or an eval folder to add to
    before = listing(out)
    try:
        return _evaluate(args)
    except BaseException:
        undo_bookkeeping(out, before)
        raise


def _evaluate(args) -> int:
    from ..data.video import VideoError
    from ..devices import PlacementError, resolve_placement
    from ..evaluation.comparable import comparability, generation_record, video_encode
    from ..evaluation.inputs import caption_rule, read_items, reference_paths, ucf101_class
    from ..evaluation.protocol import (
        DEFAULT_FRAMES,
        NEEDS_WEIGHTS,
        get_preset,
        parse_metrics,
        preset_warnings,
    )
    from ..evaluation.report import score_lines, write_report
    from ..evaluation.score import DEFAULT_IS_SPLITS, ScoreConfig, choose_metrics, score

    preset = get_preset(args.preset)
    requested = parse_metrics(args.metrics) or (preset.metrics if preset else None)
    frames = args.frames or (preset.frames if preset else DEFAULT_FRAMES)
    try:  # the one device rule; scores and generation in float32
        placement = resolve_placement(args.device, "float32")
    except PlacementError as err:
        raise UsageError(f"--{err.name}: {err}") from err
    device = placement.device
    generating = args.manifest is not None
    try:
        items = read_items(
            args.manifest or args.videos, args.root, generating=generating, caption_seed=args.seed
        )
        if preset and preset.class_prompts:
            for it in items:
                it.prompt = it.prompt or ucf101_class(it.reference or it.video)
        references = (
            reference_paths(args.references, args.root)
            if args.references
            else _unique(it.reference for it in items)
        )
        chosen = choose_metrics(
            requested, _as_generated(items, args) if generating else items, references
        )
        check_is_splits(args.is_splits, chosen, clip_count(args, preset, items), frames)
        extractors = _extractors(args, device, frames)
        for metric in chosen:  # load (and check) the networks before any long work
            if metric in NEEDS_WEIGHTS:
                getattr(extractors, NEEDS_WEIGHTS[metric])
        if "keyframes" in chosen and args.clip is not None:
            _ = extractors.clip  # load and check it now
        protocol = {"preset": preset.name if preset else None, "device": device}
        if generating and caption_rule(args.manifest, args.seed):
            protocol["captions"] = caption_rule(args.manifest, args.seed)
        notes: list[str] = []
        chunks = None
        if generating:
            items, gen_protocol, notes = _generate(args, preset, items, frames, placement)
            chunks = gen_protocol.pop("long_chunks", None)
            protocol.update(gen_protocol)
        config = ScoreConfig(
            metrics=tuple(chosen),
            frames=frames,
            reference_fps=args.fps,
            reference_native_fps=bool(preset) and args.fps is None,
            reference_mode=args.reference_clips,
            reference_seed=args.seed,
            reference_clips=args.reference_count,
            cache_dir=Path(args.cache_dir) if args.cache_dir else _default_cache(),
            is_splits=args.is_splits or DEFAULT_IS_SPLITS,
            is_seed=args.is_seed,
            keyframe_clip=args.clip is not None,
            batch_size=args.batch_size,
            protocol=protocol,
        )
        if chunks is not None:
            from ..evaluation.long import score_chunks, write_long

            report = score_chunks(chunks, references, extractors, config)
            write_long(args.out, report["long"])
        else:
            report = score(items, references, extractors, config)
        report["warnings"] += notes
        if "tau_sweep" in report["protocol"]:
            report["tau_sweep"] = report["protocol"].pop("tau_sweep")
    except VideoError as err:
        raise UsageError(str(err)) from err
    record = generation_record(items)
    report["protocol"]["video_encode"] = video_encode(items, record)
    if not generating and record is not None:  # rescoring: what made the videos
        report["protocol"]["generated_with"] = record
    if preset:
        report["paper"] = preset.paper
        source = args.first_frame if generating else (record or {}).get("first_frame")
        report["warnings"] += preset_warnings(preset, len(items), source)
    report["comparable"] = comparability(report, preset, record)
    json_path, md_path = write_report(args.out, report)
    print("\n".join(score_lines(report)))
    print(f"wrote {json_path} and {md_path}")
    return 0


def _convert(args) -> int:
    from ..evaluation.convert import convert

    if not args.source_format or not args.input:
        raise UsageError("convert-weights needs --from FORMAT --input FILE --out PATH")
    kwargs = {}
    if args.source_format != "pytorch-fid-inception":
        if not args.tokenizer:
            raise UsageError("converting a CLIP needs --tokenizer FOLDER (a CLIP tokenizer)")
        kwargs = {"tokenizer": args.tokenizer, "activation": args.activation}
    out = convert(args.source_format, args.input, args.out, **kwargs)
    print(f"wrote {out}")
    return 0


def _as_generated(items, args) -> list:
    """The items with the first-frame instructions generation will use (the reference video
    standing for its frame 0), so the metrics can be checked before generating."""
    from ..evaluation.generate import first_frame_source

    return [
        dataclasses.replace(
            it,
            first_frame=first_frame_source(it, args.first_frame),
            last_frame=it.last_frame or (it.reference if args.last_frame == "reference" else None),
        )
        for it in items
    ]


def _default_cache() -> Path:
    return Path.home() / ".cache" / "pixeldance" / "reference_stats"


def _generate(args, preset, items, frames: int, placement):
    """Generate the clips to score: (items with videos, what to record, warnings)."""
    from ..evaluation.adherence import parse_taus
    from ..evaluation.run import GenerationRequest, generate_for_eval

    request = GenerationRequest(
        model=args.model, out=Path(args.out), frames=frames, placement=placement, seed=args.seed,
        samples=args.samples, first_frame=args.first_frame, last_frame=args.last_frame,
        steps=args.steps, guidance=args.guidance, tau=args.tau, height=args.height,
        width=args.width, t2i=args.t2i, t2i_steps=args.t2i_steps,
        t2i_guidance=args.t2i_guidance, long=args.long,
        tau_sweep=parse_taus(args.tau_sweep) if args.tau_sweep else None,
    )  # fmt: skip
    return generate_for_eval(request, preset, items)
