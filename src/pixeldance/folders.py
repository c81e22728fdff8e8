"""Pipeline folders on disk: where the shipped model lives, and the check that a folder is one.

A pipeline folder is a diffusers folder (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``) with an optional ``generation.json``.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_NAME = "pixeldance-shapes"


def shipped_model_path() -> Path:
    """Folder of the model that ships inside the package (PixelDance-Shapes)."""
    return Path(__file__).resolve().parent / "assets" / SHIPPED_NAME


def pipeline_folder(path: str | Path | None) -> Path:
    """``path`` checked to be a pipeline folder (None: the shipped model's folder).

    Raises FileNotFoundError for a missing path and ValueError for a folder that is not a
    pipeline folder, each naming it.
    """
    folder = Path(path) if path is not None else shipped_model_path()
    if not folder.exists():
        raise FileNotFoundError(f"model folder not found: {folder}")
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"not a pixeldance pipeline folder (no model_index.json): {folder}")
    return folder
