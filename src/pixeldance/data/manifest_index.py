"""The manifest index: where it lives, when it is still valid, and how it is built.

A manifest (CSV or JSONL) is parsed in chunks by pyarrow into flat binary files: the paths and
the captions each as one UTF-8 byte blob with an int64 offsets array, and the optional
``height``/``width`` columns as an int32 array, plus ``meta.json``. :mod:`pixeldance.data.manifest`
maps them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

PATH_COLUMNS = ("path", "video", "filepath", "file", "image")
CAPTION_COLUMNS = ("caption", "text", "name", "prompt", "title")
INDEX_FORMAT = 1
_CHUNK_ROWS = 65536
_BLOCK_BYTES = 4 << 20  # CSV read size: larger blocks read faster but raise peak memory


def _stamp(manifest: Path) -> dict:
    """What the index was built from. Not the path: a folder moved with its index keeps it
    (paths in the index are relative; the base is applied when read)."""
    st = manifest.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def index_is_valid(index: Path, manifest: Path) -> bool:
    try:
        meta = json.loads((index / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("format") == INDEX_FORMAT and meta.get("source") == _stamp(manifest)


def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pixeldance"


def index_dir(manifest: Path) -> Path:
    """Beside the manifest when that folder is writable (or already holds a valid index), else
    in the user's cache, named after the manifest's full path."""
    beside = manifest.parent / f".{manifest.name}.index"
    if index_is_valid(beside, manifest) or os.access(manifest.parent, os.W_OK):
        return beside
    key = hashlib.sha256(str(manifest.resolve()).encode()).hexdigest()[:16]
    return user_cache_dir() / "manifests" / f"{manifest.name}-{key}"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if needed), held for the block."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _columns(manifest: Path, cols: list[str]) -> dict:
    path_col = next((c for c in PATH_COLUMNS if c in cols), None)
    cap_col = next((c for c in CAPTION_COLUMNS if c in cols), None)
    webvid = path_col is None and {"videoid", "page_dir"} <= set(cols)
    if (path_col is None and not webvid) or cap_col is None:
        raise ValueError(
            f"manifest {manifest} needs a path column (one of {PATH_COLUMNS}, or WebVid's videoid + page_dir) "
            f"and a caption column (one of {CAPTION_COLUMNS}); it has {sorted(cols)}"
        )
    has_sizes = {"height", "width"} <= set(cols)
    return {"path": path_col, "caption": cap_col, "webvid": webvid, "has_sizes": has_sizes}


class _IndexWriter:
    """Appends chunks of columns (pyarrow arrays) to the index files in ``folder``."""

    def __init__(self, folder: Path, has_sizes: bool):
        self.folder, self.rows = folder, 0
        self.files = {
            name: open(folder / name, "wb")
            for name in ("paths.bin", "paths.off", "captions.bin", "captions.off")
        }
        self.sizes = open(folder / "sizes.bin", "wb") if has_sizes else None
        self.ends = {"paths": 0, "captions": 0}
        for name in ("paths", "captions"):
            self.files[f"{name}.off"].write(np.zeros(1, np.int64).tobytes())

    def _strings(self, name: str, arr) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = pc.fill_null(arr.cast(pa.large_string()), "")
        _, offs, data = arr.buffers()
        offs = np.frombuffer(offs, np.int64)[arr.offset : arr.offset + len(arr) + 1]
        if data is not None:
            self.files[f"{name}.bin"].write(memoryview(data)[offs[0] : offs[-1]])
        self.files[f"{name}.off"].write((offs[1:] - offs[0] + self.ends[name]).tobytes())
        self.ends[name] += int(offs[-1] - offs[0])

    def add(self, paths, captions, heights=None, widths=None) -> None:
        self._strings("paths", paths)
        self._strings("captions", captions)
        if self.sizes is not None:
            hw = [np.asarray(a.fill_null(0), np.int32) for a in (heights, widths)]
            self.sizes.write(np.stack(hw, 1).clip(min=0).tobytes())
        self.rows += len(paths)

    def close(self) -> None:
        for f in [*self.files.values(), self.sizes]:
            if f is not None:
                f.close()


def _needed(cols: dict, header: list[str]) -> list[str]:
    wanted = {cols["path"], cols["caption"], "videoid", "page_dir", "height", "width"}
    return [c for c in header if c in wanted]


def _is_size(column: str) -> bool:
    return column in ("height", "width")


def _csv_chunks(manifest: Path, cols: dict, header: list[str]):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    # every column as text (WebVid's page_dir "006001_006050" or a videoid must not become a
    # number), the sizes as integers with empty cells as nulls
    types = {c: pa.int64() if _is_size(c) else pa.string() for c in header}
    yield from pcsv.open_csv(
        manifest,
        read_options=pcsv.ReadOptions(block_size=_BLOCK_BYTES),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types=types, include_columns=_needed(cols, header)
        ),
    )


def _jsonl_chunks(manifest: Path, cols: dict, header: list[str]):
    import pyarrow as pa

    columns = _needed(cols, header)

    def chunk(rows: list[dict]):
        data = {}
        for c in columns:
            values = [r.get(c) for r in rows]
            if _is_size(c):
                data[c] = pa.array(
                    [None if v in (None, "") else int(v) for v in values], pa.int64()
                )
            else:
                data[c] = pa.array(["" if v is None else str(v) for v in values], pa.string())
        return pa.RecordBatch.from_pydict(data)

    rows = []
    with open(manifest, encoding="utf-8-sig") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
                if len(rows) == _CHUNK_ROWS:
                    yield chunk(rows)
                    rows = []
    if rows:
        yield chunk(rows)


def _header(manifest: Path) -> tuple[list[str], bool]:
    """Column names and whether the manifest is JSONL."""
    if manifest.suffix.lower() in (".jsonl", ".json"):
        with open(manifest, encoding="utf-8-sig") as f:
            first = next((line for line in f if line.strip()), None)
        return (list(json.loads(first)) if first else []), True
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), []), False


def build_index(manifest: Path, index: Path) -> None:
    """Parse ``manifest`` into the index folder ``index`` (written aside, then renamed)."""
    import pyarrow as pa

    try:
        header, jsonl = _header(manifest)
    except (UnicodeDecodeError, ValueError, csv.Error) as err:
        raise ValueError(
            f"manifest {manifest} could not be read: {err} (it must be UTF-8 CSV or JSONL)"
        ) from err
    if not header:
        raise ValueError(f"manifest has no rows: {manifest}")
    cols = _columns(manifest, header)
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{index.name}.", suffix=".part", dir=index.parent))
    try:
        writer = _IndexWriter(tmp, cols["has_sizes"])
        read = _jsonl_chunks if jsonl else _csv_chunks
        chunks = read(manifest, cols, header)
        try:
            for batch in chunks:
                writer.add(*_record_columns(batch, cols))
        except (pa.ArrowInvalid, ValueError, UnicodeDecodeError) as err:
            raise ValueError(
                f"manifest {manifest} could not be read: {err} (it must be UTF-8 CSV or JSONL "
                "with whole numbers in height/width)"
            ) from err
        finally:
            writer.close()
        pa.default_memory_pool().release_unused()  # give the parser's blocks back
        if writer.rows == 0:
            raise ValueError(f"manifest has no rows: {manifest}")
        meta = {"format": INDEX_FORMAT, "source": _stamp(manifest), "rows": writer.rows, **cols}
        meta["built_from"] = str(manifest.resolve())
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.chmod(tmp, 0o755)
        if index.exists():  # stale: the manifest changed since it was built
            shutil.rmtree(index)
        try:
            os.replace(tmp, index)
        except OSError:  # another node renamed its build into place first
            if not index_is_valid(index, manifest):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _record_columns(batch, cols: dict) -> tuple:
    """(paths, captions[, heights, widths]) of a chunk, as pyarrow arrays."""
    import pyarrow.compute as pc

    if cols["webvid"]:  # {page_dir}/{videoid}.mp4
        paths = pc.binary_join_element_wise(
            batch.column("page_dir"), "/", batch.column("videoid"), ".mp4", ""
        )
    else:
        paths = batch.column(cols["path"])
    sizes = (batch.column("height"), batch.column("width")) if cols["has_sizes"] else ()
    return paths, batch.column(cols["caption"]), *sizes


def _first_rows(manifest: Path, n: int) -> tuple[list[str], list[dict]]:
    """The column names and the first ``n`` rows (dicts) of a CSV or JSONL manifest."""
    header, jsonl = _header(manifest)
    rows: list[dict] = []
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        if jsonl:
            for line in f:
                if len(rows) >= n:
                    break
                if line.strip():
                    item = json.loads(line)
                    rows.append(item if isinstance(item, dict) else {})
        else:
            for row in csv.DictReader(f):
                if len(rows) >= n:
                    break
                rows.append(row)
    return header, rows


def manifest_problem(manifest: str | Path) -> str | None:
    """What makes ``manifest`` unreadable as training data, found from its first rows before
    any work (one line naming the file), or None: not UTF-8, not CSV/JSONL, no rows, no path or
    caption column."""
    manifest = Path(manifest)
    try:
        header, rows = _first_rows(manifest, 1)
    except UnicodeDecodeError as err:
        return f"manifest {manifest} is not UTF-8 text ({err.reason} at byte {err.start})"
    except (ValueError, csv.Error) as err:
        return f"manifest {manifest} is not CSV or JSONL ({' '.join(str(err).split())})"
    except OSError as err:
        return f"manifest {manifest} could not be read: {err.strerror or err}"
    if not header or not rows:
        return f"manifest {manifest} has no rows"
    try:
        _columns(manifest, header)
    except ValueError as err:
        return str(err)
    return None


def peek_paths(manifest: Path, n: int) -> list[str]:
    """The video paths of the first ``n`` rows, resolved as the training reader resolves them
    (:func:`pixeldance.data.manifest.read_video_records`); [] if the manifest cannot be read."""
    try:
        header, rows = _first_rows(manifest, n)
        cols = _columns(manifest, header)
    except (OSError, ValueError, csv.Error):
        return []
    base = manifest.parent
    if cols["webvid"] and (base / "videos").is_dir():
        base = base / "videos"
    out = []
    for row in rows:
        if cols["webvid"]:
            rel = f"{row.get('page_dir', '')}/{row.get('videoid', '')}.mp4"
        else:
            rel = str(row.get(cols["path"]) or "")
        if rel:
            out.append(rel if "://" in rel or os.path.isabs(rel) else os.path.join(base, rel))
    return out
