"""The networks the paper-style metrics need, loaded from local files only.

Nothing here downloads anything. A missing file is a :class:`WeightsNotFound` that names the
file, its SHA-256 and where to put it. The two TorchScript networks are loaded with
``torch.jit.load``, which runs code stored in the file, so their SHA-256 must match the known
one; ``trust=True`` (``--trust-weights``) loads a file with another checksum after a printed
warning, and the report then says the checksum was not verified.

Checksums: the authors of these files publish none. The constants below are the SHA-256 of the
copies mirrored on the Hugging Face hub (their git-LFS object ids), found by this project but
not compared by it with the original downloads.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .features import FrameFeatures, TextImageFeatures, VideoFeatures
from .weights_io import WeightsUnreadable, jit_load, read_safetensors

WEIGHTS_ENV = "PIXELDANCE_EVAL_WEIGHTS"


class WeightsNotFound(FileNotFoundError):
    """A weights file the metric needs is not on this machine."""


class WeightsChecksumError(ValueError):
    """A weights file whose SHA-256 is not the known one."""


@dataclass(frozen=True)
class KnownWeights:
    filename: str
    sha256: str
    size: int  # bytes
    what: str
    source: str
    checksum_source: str
    flag: str  # the command-line option that takes its path


I3D = KnownWeights(
    filename="i3d_torchscript.pt",
    sha256="bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2",
    size=51_235_320,
    what="the Kinetics-400 I3D network for FVD (TorchScript)",
    source="the FVD code of StyleGAN-V (Skorokhodov et al., CVPR 2022), the port later "
    "video papers use; Hugging Face mirrors include flateon/FVD-I3D-torchscript",
    checksum_source="git-LFS id of the copy at chunyu-li/LatentSync auxiliary/i3d_torchscript.pt",
    flag="--i3d",
)
INCEPTION = KnownWeights(
    filename="inception-2015-12-05.pt",
    sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
    size=95_607_719,
    what="the Inception network of the TensorFlow FID/IS code (2015-12-05 graph), TorchScript",
    source="the metrics of StyleGAN2-ADA (NVlabs), used by StyleGAN-V for FID and IS",
    checksum_source="git-LFS id of the copy at hngan/webui-models inception-2015-12-05.pt",
    flag="--inception",
)
# CLIP for CLIPSIM: the paper does not name its CLIP; ViT-B/32 is the usual choice for MSR-VTT.
DEFAULT_CLIP = "openai/clip-vit-base-patch32"


def weights_dir() -> Path:
    """Where weights are looked for by default: ``$PIXELDANCE_EVAL_WEIGHTS`` or
    ``~/.cache/pixeldance/evaluation``."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else Path.home() / ".cache" / "pixeldance" / "evaluation"


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _missing(known: KnownWeights, path: Path) -> WeightsNotFound:
    return WeightsNotFound(
        f"{known.what} is not on this machine: {path} does not exist. Download "
        f"{known.filename} ({known.size:,} bytes, SHA-256 {known.sha256}; that checksum is the "
        f"{known.checksum_source}, not verified against the original, whose authors publish "
        f"none) yourself from {known.source}, and put it at {weights_dir() / known.filename} "
        f"(or set ${WEIGHTS_ENV}, or pass {known.flag} PATH); nothing is downloaded for you"
    )


def resolve(known: KnownWeights, path: str | os.PathLike | None = None) -> Path:
    """The weights file: ``path`` if given, else the default folder's ``known.filename``."""
    p = Path(path) if path is not None else weights_dir() / known.filename
    if p.is_dir():
        raise WeightsUnreadable(f"{known.flag} {p} is a folder, not the file {known.filename}")
    if not p.is_file():
        raise _missing(known, p)
    return p


def verify(known: KnownWeights, path: Path, trust: bool = False) -> tuple[str, bool]:
    """(SHA-256 of ``path``, whether it is the known one). A mismatch raises
    :class:`WeightsChecksumError` unless ``trust``, which warns and goes on."""
    actual = sha256_of(path)
    if actual == known.sha256:
        return actual, True
    message = (
        f"{path} has SHA-256 {actual}, not {known.sha256} ({known.checksum_source}); it is "
        f"not the known {known.filename}"
    )
    if not trust:
        raise WeightsChecksumError(
            message + ". Loading it would run the code it holds: use the known file, or pass "
            "--trust-weights if you know where this one comes from (scores will not be "
            "comparable with the published ones)"
        )
    print(f"warning: {message}; loading it because the weights are trusted", file=sys.stderr)
    return actual, False


CONVERTERS = {
    "i3d": None,
    "inception": "pytorch-fid-inception",
}


def refuse_other_formats(p: Path, role: str) -> None:
    """A one-line error naming the converter when ``p`` is a weights file in another format
    than the loader takes (a plain state dict where a TorchScript file is expected)."""
    from .archive import is_torchscript

    if p.suffix == ".safetensors" or is_torchscript(p):
        return
    if p.stat().st_size == 0:
        raise WeightsUnreadable(f"{p} is empty (0 bytes): not a weights file")
    converter = CONVERTERS.get(role)
    hint = (
        f"convert it with: pixeldance eval convert-weights --from {converter} --input {p} "
        f"--out {p.with_suffix('.safetensors').name}"
        if converter
        else "use the TorchScript file named in EVALUATION.md"
    )
    raise WeightsChecksumError(
        f"{p} is not a TorchScript file (a plain state dict, such as pytorch-fid's "
        f"pt_inception-2015-12-05-6726825d.pth?); {hint}"
    )


def _load_torchscript(known: KnownWeights, path, trust: bool, device, wrapper, name: str, **kwargs):
    """``wrapper`` around the TorchScript network ``known`` (in eval mode), loaded after the
    checksum check, with its name, SHA-256, verified? and device, and ``kwargs``."""
    p = resolve(known, path)
    if p.suffix == ".safetensors":
        raise WeightsUnreadable(f"{known.flag} {p}: {known.what} is read from TorchScript only")
    refuse_other_formats(p, "i3d" if known is I3D else "inception")
    checksum, verified = verify(known, p, trust)
    calls = {**kwargs.get("call_kwargs", {}), **kwargs.get("feature_kwargs", {})}
    calls.update(kwargs.get("probability_kwargs", {}))
    module = jit_load(p, device, known.what, tuple(calls))
    return wrapper(module, name=name, checksum=checksum, verified=verified, device=device, **kwargs)


I3D_MIN_FRAMES = 9  # fewer frames are pooled away to nothing inside the I3D network


def load_i3d(
    path=None, trust: bool = False, device="cpu", batch_size: int = 8, frames: int = 16
) -> VideoFeatures:
    """The FVD extractor: I3D called as StyleGAN-V's FVD code calls it, with ``rescale=True,
    resize=True, return_features=True`` on ``frames`` frames (the protocol's 16) given as uint8
    centre squares at their own size (the file rescales them to [-1, 1] and resizes them to
    224x224 itself), giving 400-d features per clip."""
    if frames < I3D_MIN_FRAMES:
        raise ValueError(f"FVD's I3D network needs at least {I3D_MIN_FRAMES} frames, got {frames}")
    return _load_torchscript(
        I3D,
        path,
        trust,
        device,
        VideoFeatures,
        name=f"I3D Kinetics-400 ({I3D.filename})",
        frames=frames,
        size=None,  # uint8 at its own size: the file rescales and resizes (to 224) itself
        value_range=(-1.0, 1.0),
        call_kwargs=dict(rescale=True, resize=True, return_features=True),
        batch_size=batch_size,
    )


def load_inception(
    path=None, trust: bool = False, device="cpu", batch_size: int = 64
) -> FrameFeatures:
    """The FID/IS extractor: 2048-d pool features (``return_features=True``) and 1008-class
    probabilities without the output bias (``no_output_bias=True``, as the TensorFlow IS code)
    of uint8 frames (centre square crop) at their own size: the file's own input path resizes
    them to 299x299, as StyleGAN2-ADA's metrics call it."""
    p = resolve(INCEPTION, path)
    if p.suffix == ".safetensors":  # pytorch-fid's weights, converted (tensors only)
        return _load_fid_inception(p, device, batch_size)
    return _load_torchscript(
        INCEPTION,
        path,
        trust,
        device,
        FrameFeatures,
        name=f"Inception 2015-12-05 ({INCEPTION.filename})",
        size=None,  # the file resizes to 299 itself: uint8 frames go in as decoded
        value_range=(0.0, 255.0),
        feature_kwargs=dict(return_features=True),
        probability_kwargs=dict(no_output_bias=True),
        batch_size=batch_size,
    )


def _load_fid_inception(p: Path, device, batch_size: int) -> FrameFeatures:
    """pytorch-fid's Inception weights as safetensors, run by :class:`FIDInception` on
    299x299 frames in [-1, 1] (pytorch-fid's own input path: bilinear resize, 2x - 1)."""
    from .inception import FIDInception

    network, meta = read_safetensors(
        p,
        "pytorch-fid's Inception weights",
        lambda tensors, meta: (FIDInception.from_tensors(tensors), meta),
    )
    network = network.to(device)
    # converted from the file whose SHA-256 starts as published (pytorch-fid's release name)
    published = meta.get("source_is_published_file")
    return FrameFeatures(
        network,
        name=f"FID Inception, pytorch-fid weights ({p.name}): close to, not identical with, "
        "the TensorFlow graph",
        checksum=sha256_of(p),
        verified=None if published is None else published == "true",
        size=299,
        value_range=(-1.0, 1.0),
        feature_kwargs=dict(return_features=True),
        probability_kwargs=dict(no_output_bias=True),
        batch_size=batch_size,
        device=device,
    )


def _clip_folder(name_or_path: str, allow_download: bool) -> Path:
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder
    if folder.is_file():
        kind = "openai-clip" if folder.suffix == ".pt" else "open-clip"
        raise WeightsNotFound(
            f"--clip {folder} is a checkpoint file, not a CLIP folder; convert it with: "
            f"pixeldance eval convert-weights --from {kind} --input {folder} --tokenizer "
            "CLIP_TOKENIZER_FOLDER --out CLIP_FOLDER"
        )
    if folder.exists() or name_or_path.count("/") != 1:
        raise WeightsNotFound(
            f"CLIP model {name_or_path!r} is neither a folder nor a hub id (owner/name)"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = ["*.json", "*.txt", "model.safetensors"]
    try:
        return Path(
            snapshot_download(
                name_or_path, allow_patterns=patterns, local_files_only=not allow_download
            )
        )
    except LocalEntryNotFoundError as err:
        raise WeightsNotFound(
            f"CLIP model {name_or_path} is not in the local Hugging Face cache; put a folder "
            "with config.json, model.safetensors, the tokenizer files and "
            "preprocessor_config.json somewhere and pass --clip FOLDER, or pass "
            "--allow-download to fetch it from the hub"
        ) from err


def load_clip(
    name_or_path: str = DEFAULT_CLIP,
    allow_download: bool = False,
    device="cpu",
    batch_size: int = 64,
) -> TextImageFeatures:
    """The CLIPSIM extractor: a transformers ``CLIPModel`` and its tokenizer from a local
    folder or the local hub cache (``allow_download`` lets the hub be asked). Only
    ``model.safetensors`` is read; its SHA-256 is the checksum in the report."""
    from transformers import AutoTokenizer, CLIPModel

    folder = _clip_folder(name_or_path, allow_download)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise WeightsNotFound(
            f"{folder} has no model.safetensors (only safetensors weights are read)"
        )
    model = CLIPModel.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    pre = folder / "preprocessor_config.json"
    config = json.loads(pre.read_text()) if pre.is_file() else {}
    crop = config.get("crop_size", 224)
    size = crop.get("height", 224) if isinstance(crop, dict) else int(crop)
    extra = {
        new: config[old]
        for old, new in (("image_mean", "mean"), ("image_std", "std"))
        if old in config
    }
    return TextImageFeatures(
        model.eval().to(device),
        tokenizer,
        name=f"CLIP {name_or_path}",
        checksum=sha256_of(weights),
        verified=None,  # no known checksum to compare with: the report records the file's own
        size=size,
        max_length=min(77, model.config.text_config.max_position_embeddings),
        batch_size=batch_size,
        device=device,
        **extra,  # the folder's mean / std, else TextImageFeatures' (CLIP's own)
    )


# The UCF-101 C3D of TGANv2's video IS; StyleGAN-V's TorchScript port is named so. No
# checksum of it is published or known to this project: a TorchScript file is loaded only with
# --trust-weights (it runs code); a safetensors C3D state dict holds tensors only.
C3D_FILENAME = "c3d_ucf101.pt"


def load_c3d(path=None, trust: bool = False, device="cpu", frames: int = 16):
    """The video-IS extractor (:mod:`pixeldance.evaluation.c3d`) from ``path`` (default: the
    weights folder's ``c3d_ucf101.pt``): safetensors (a C3D state dict) or TorchScript."""
    from .c3d import VideoProbabilities, load_c3d_safetensors

    p = Path(path) if path is not None else weights_dir() / C3D_FILENAME
    if p.is_dir():
        raise WeightsUnreadable(f"--c3d {p} is a folder, not the file {C3D_FILENAME}")
    if not p.is_file():
        raise WeightsNotFound(
            f"the UCF-101 C3D network for the video Inception Score is not on this machine: "
            f"{p} does not exist. Put StyleGAN-V's TorchScript port of TGANv2's C3D "
            f"({C3D_FILENAME}) or a C3D state dict as safetensors there, or pass --c3d PATH; "
            "nothing is downloaded for you"
        )
    checksum = sha256_of(p)
    if p.suffix == ".safetensors":
        return load_c3d_safetensors(p, checksum, device, frames)
    if not trust:
        raise WeightsChecksumError(
            f"{p}: no SHA-256 of the C3D TorchScript file is known to check it against, and "
            "loading it runs the code it holds; pass --trust-weights if you know where it "
            "comes from, or give a safetensors C3D state dict"
        )
    print(f"warning: loading {p} (SHA-256 {checksum}, unverified)", file=sys.stderr)
    module = jit_load(p, device, "a TorchScript C3D network")
    return VideoProbabilities(
        module,
        name=f"C3D UCF-101 ({p.name}, TorchScript)",
        checksum=checksum,
        verified=None,  # no known checksum to compare with (loaded because trusted)
        size=None,  # the file's own resize, as StyleGAN-V calls it
        frames=frames,
        device=device,
    )
