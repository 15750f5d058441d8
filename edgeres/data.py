"""Calibration and evaluation datasets from image folders or ``.npy``/``.npz`` arrays.

Every consumer (INT8 calibration, accuracy checks, benchmarks) reads samples
through :func:`load_dataset`, so it sees the same pixels, preprocessed by the
model's :class:`~edgeres.recipe.Recipe`. This module imports numpy and Pillow
only (never torch).

Sources:
    * an image folder, searched recursively for jpg/jpeg/png/bmp/webp files
      (case-insensitive). When every image lies inside a sub-folder of the root
      (``root/<class>/.../img``, the ImageFolder layout), labels are the indices
      of the sorted class-folder names; when any image lies directly in the
      root, the folder is flat and has no labels.
    * ``.npy``: float NCHW already normalized, or uint8 NHWC raw pixels that the
      recipe normalizes (uint8 NHW is accepted for 1-channel models). The file
      is memory-mapped, so memory stays bounded by one batch. No labels.
    * ``.npz``: images under ``images`` or ``x``, optional labels under
      ``labels`` or ``y`` (integer class indices of the recipe's ``num_classes``,
      checked in their own dtype before the int64 cast, so a huge uint64 cannot
      wrap; an ImageFolder may not have more class folders than the model has
      classes); same two layouts. ``file.npz#split`` reads
      ``split_images`` and ``split_labels`` instead. An ``.npz`` member cannot be
      memory-mapped: the chosen samples are held in memory (use ``.npy`` for
      large sets).
    * ``reference:calib`` / ``reference:test``: the splits shipped with the
      reference model (its files and recipe come from :mod:`edgeres.reference`,
      which this module imports one way: reference knows nothing of datasets);
      the recipe may be None. :func:`reference_dataset` is the short form.

Sample choice is deterministic: candidates are sorted (paths, or array
indices), a ``seed``-ed permutation picks ``size`` of them, and the chosen
samples are returned in sorted source order. A ``size`` larger than the
number of readable samples is a :class:`DataError` (a calibration set silently
smaller than asked would make results incomparable).

Image files that cannot be decoded are skipped and listed in
``Dataset.skipped`` (path, reason); when ``size`` is given, files are decoded
in permutation order until ``size`` readable ones are found, so only files
that were examined can be reported. Each chosen image is fully decoded once
when the dataset is loaded (to find corrupt files up front; two threads) and again, batch
by batch, by :meth:`Dataset.batches` (the next batch in a worker thread while the
caller works on the current one).
"""

from __future__ import annotations

import hashlib
import os
import tokenize
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgeres import reference
from edgeres.errors import DataError
from edgeres.recipe import Recipe

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGE_KEYS = ("images", "x")
LABEL_KEYS = ("labels", "y")
REFERENCE_PREFIX = "reference:"
_NAN_SCAN_SAMPLES = 256  # samples per chunk when scanning arrays for NaN/Inf
_CHECK_THREADS = 2  # threads decoding images when a folder is loaded (the CI machine's cores)
# Preprocessed samples of an image folder kept from the load (which decodes every file anyway to find the
# unreadable ones), so batches() does not decode them a second time; larger selections stream from disk.
KEEP_DECODED_BYTES = 1 << 30

Reader = Callable[[np.ndarray], np.ndarray]  # positions in the chosen list -> float32 NCHW


class Dataset:
    """A fixed, ordered list of samples, preprocessed on demand.

    Attributes:
        source: what was loaded (the path or ``reference:<split>`` as given).
        recipe: the preprocessing applied to every sample.
        labels: int64 labels of the chosen samples, or None.
        classes: class-folder names of an ImageFolder source (label i is
            ``classes[i]``), else None.
        skipped: (path, reason) of every image file that could not be read.
        identities: one string per chosen sample (relative path or array index,
            with a sha256 of its content); :meth:`fingerprint` hashes them.
    """

    def __init__(
        self,
        *,
        source: str,
        recipe: Recipe,
        reader: Reader,
        identities: Sequence[str],
        labels: np.ndarray | None,
        skipped: Sequence[tuple[str, str]] = (),
        classes: Sequence[str] | None = None,
    ) -> None:
        self.source = source
        self.recipe = recipe
        self._reader = reader
        self.identities = tuple(identities)
        self.labels = labels
        self.skipped = list(skipped)
        self.classes = list(classes) if classes is not None else None

    def __len__(self) -> int:
        return len(self.identities)

    def __repr__(self) -> str:
        labels = "labelled" if self.labels is not None else "unlabelled"
        return (
            f"Dataset({self.source!r}, {len(self)} samples, {labels}, input {self.recipe.input_shape}, "
            f"{len(self.skipped)} skipped)"
        )

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield (images float32 NCHW contiguous, int64 labels or None), in order.

        The last batch may be smaller. Only one batch is decoded at a time.
        """
        if int(batch_size) < 1:
            raise DataError(f"batch size must be at least 1, received {batch_size}")
        from concurrent.futures import ThreadPoolExecutor

        def read(start: int) -> tuple[np.ndarray, np.ndarray | None]:
            positions = np.arange(start, min(start + int(batch_size), len(self)))
            images = np.ascontiguousarray(self._reader(positions), dtype=np.float32)
            return images, None if self.labels is None else self.labels[positions]

        # batch k+1 is decoded in a worker thread while the consumer (onnxruntime) works on batch k;
        # Pillow and onnxruntime release the GIL, and batches still come in order
        starts = list(range(0, len(self), int(batch_size)))
        with ThreadPoolExecutor(max_workers=1) as worker:
            pending = worker.submit(read, starts[0]) if starts else None
            for k in range(len(starts)):
                batch = pending.result()
                pending = worker.submit(read, starts[k + 1]) if k + 1 < len(starts) else None
                yield batch

    def array(self, batch_size: int = 256) -> np.ndarray:
        """All samples as one float32 NCHW array (for small sets)."""
        return np.concatenate([images for images, _ in self.batches(batch_size)], axis=0)

    def fingerprint(self) -> str:
        """sha256 of the chosen samples' identities and contents, in order.

        Independent of where the source lives on disk and of the recipe (record
        the recipe separately); changes when any chosen sample or the choice changes.
        """
        digest = hashlib.sha256()
        for identity in self.identities:
            digest.update(identity.encode("utf-8"))
            digest.update(b"\n")
        return digest.hexdigest()


def load_dataset(
    source: str | os.PathLike[str],
    recipe: Recipe | None,
    *,
    size: int | None = None,
    seed: int = 0,
    require_labels: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Dataset:
    """Load a calibration/evaluation dataset (see the module docstring for sources).

    Args:
        source: image folder, ``.npy``, ``.npz`` (``file.npz#split``) or ``reference:<split>``.
        recipe: preprocessing of the model; None only for ``reference:`` sources.
        size: number of samples to pick (all if None).
        seed: seed of the pick; irrelevant when ``size`` is None.
        require_labels: raise unless the source has labels.
        progress: called with the number of image files checked so far, batch by batch (image folders).

    Raises:
        DataError: missing or empty source, no readable image, ``size`` larger than
            what is readable, arrays of the wrong shape/dtype, NaN/Inf, missing labels.
    """
    text = os.fspath(source)
    if size is not None and (isinstance(size, bool) or int(size) < 1):
        raise DataError(f"size must be a positive number of samples, received {size!r}")
    if text.startswith(REFERENCE_PREFIX):
        split = text[len(REFERENCE_PREFIX):]
        text_source = f"{reference.reference_data_path()}#{reference.check_split(split)}"
        dataset = load_dataset(
            text_source, recipe or reference.reference_recipe(), size=size, seed=seed, require_labels=require_labels,
            progress=progress,
        )
        dataset.source = text
        return dataset
    if recipe is None:
        raise DataError(f"a preprocessing recipe is needed to load {text!r} (only reference: sources have one)")
    path, split = _split_source(text)
    if not path.exists():
        raise DataError(f"data source {path} does not exist (expected an image folder, a .npy or a .npz file)")
    if path.is_dir():
        dataset = _folder_dataset(path, recipe, size, seed, progress)
    elif path.suffix.lower() == ".npy":
        dataset = _array_dataset(_open_npy(path), None, text, recipe, size, seed)
    elif path.suffix.lower() == ".npz":
        images, labels = _open_npz(path, split, recipe.num_classes)
        dataset = _array_dataset(images, labels, text, recipe, size, seed)
    else:
        raise DataError(
            f"unsupported data source {path}: expected an image folder, a .npy or a .npz file "
            f"(received a {path.suffix or 'extensionless'} file)"
        )
    dataset.source = text
    if require_labels:
        _check_labels(dataset)
    return dataset


def reference_dataset(split: str, *, size: int | None = None, seed: int = 0) -> Dataset:
    """The shipped ``calib`` or ``test`` split as a labelled :class:`Dataset` (the reference recipe)."""
    return load_dataset(f"{REFERENCE_PREFIX}{split}", None, size=size, seed=seed, require_labels=True)


def source_path(source: str | os.PathLike[str]) -> Path | None:
    """The file or folder a data source reads (``file.npz#split`` -> ``file.npz``); None for ``reference:`` sources."""
    text = os.fspath(source)
    return None if text.startswith(REFERENCE_PREFIX) else _split_source(text)[0]


def _split_source(text: str) -> tuple[Path, str | None]:
    """``file.npz#split`` -> (file.npz, split); a path that exists as given is never split."""
    path = Path(text)
    if "#" in text and not path.exists():
        head, _, split = text.rpartition("#")
        if head.lower().endswith(".npz") and split:
            return Path(head), split
    return path, None


def _check_labels(dataset: Dataset) -> None:
    if dataset.labels is None:
        raise DataError(
            f"{dataset.source} has no labels, but labels are required: use an ImageFolder layout "
            f"(root/<class>/<image>) or a .npz with a 'labels' (or 'y') array"
        )
    # their range was checked against the recipe's classes when they were read


def choose(count: int, size: int | None, seed: int) -> np.ndarray:
    """Positions of ``size`` of ``count`` candidates in seeded-permutation order (all, in order, if None)."""
    if size is None:
        return np.arange(count)
    return np.random.default_rng(seed).permutation(count)


# ---------------------------------------------------------------- image folders


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, by extension), sorted by relative POSIX path."""
    found = [
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    ]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _folder_dataset(root: Path, recipe: Recipe, size: int | None, seed: int,
                    progress: Callable[[int], None] | None = None) -> Dataset:
    paths = find_images(root)
    if not paths:
        raise DataError(
            f"image folder {root} holds no image files (looked recursively for {', '.join(IMAGE_EXTENSIONS)})"
        )
    relative = [p.relative_to(root).as_posix() for p in paths]
    classes: list[str] | None = None
    if all("/" in r for r in relative):
        classes = sorted({r.split("/", 1)[0] for r in relative})
    chosen: list[int] = []
    digests: dict[int, str] = {}
    skipped: list[tuple[str, str]] = []
    order = [int(i) for i in choose(len(paths), size, seed)]

    sample_bytes = 4 * int(np.prod(recipe.input_shape))
    keep = (size if size is not None else len(paths)) * sample_bytes <= KEEP_DECODED_BYTES
    decoded: dict[int, np.ndarray] = {}

    def check(index: int) -> tuple[int, str | None, str | None]:
        try:
            digest, sample = _check_image(paths[index], recipe if keep else None)
        except Exception as exc:  # any decoder failure means: skip this file
            return index, None, f"{type(exc).__name__}: {exc}".strip()
        if sample is not None:
            decoded[index] = sample
        return index, digest, None

    from concurrent.futures import ThreadPoolExecutor

    # decoded on two threads (Pillow releases the GIL), in rounds of the still missing count, so only
    # files up to the size-th readable one (in permutation order) are examined, as before
    with ThreadPoolExecutor(max_workers=_CHECK_THREADS) as pool:
        position = 0
        while position < len(order) and (size is None or len(chosen) < size):
            want = len(order) - position if size is None else size - len(chosen)
            batch = order[position:position + want]
            position += len(batch)
            for index, digest, error in pool.map(check, batch):
                if progress is not None:
                    progress(1)
                if error is not None:
                    skipped.append((str(paths[index]), error))
                    continue
                digests[index] = digest
                chosen.append(index)
    if not chosen:
        raise DataError(
            f"image folder {root} has no readable image: all {len(skipped)} failed to decode "
            f"(first: {skipped[0][0]}: {skipped[0][1]})"
        )
    if size is not None and len(chosen) < size:
        raise DataError(
            f"requested {size} samples from {root}, but it has only {len(chosen)} readable images "
            f"({len(skipped)} unreadable skipped); lower the size or add images"
        )
    chosen.sort()
    chosen_paths = [paths[i] for i in chosen]
    labels = None
    if classes is not None:
        if len(classes) > recipe.num_classes:
            raise DataError(
                f"image folder {root} has {len(classes)} class folders ({classes[0]} ... {classes[-1]}), but the model "
                f"has {recipe.num_classes} classes; its labels (class-folder indices) would not be this model's"
            )
        class_index = {name: i for i, name in enumerate(classes)}
        labels = np.array([class_index[relative[i].split("/", 1)[0]] for i in chosen], dtype=np.int64)

    kept = [decoded.get(i) for i in chosen]
    decoded.clear()

    def read(positions: np.ndarray) -> np.ndarray:
        return np.stack([kept[int(p)] if kept[int(p)] is not None else _decode(chosen_paths[int(p)], recipe)
                         for p in positions])

    identities = [f"{relative[i]}:{digests[i]}" for i in chosen]
    return Dataset(
        source=str(root), recipe=recipe, reader=read, identities=identities,
        labels=labels, skipped=skipped, classes=classes,
    )


def _check_image(path: Path, recipe: Recipe | None = None) -> tuple[str, np.ndarray | None]:
    """Fully decode ``path`` (raising on any defect): the sha256 of its bytes, and the sample
    preprocessed by ``recipe`` (None without one)."""
    import io

    from PIL import Image

    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.width < 1 or image.height < 1:
            raise ValueError(f"empty image ({image.width}x{image.height})")
        sample = None if recipe is None else np.ascontiguousarray(recipe.preprocess(image), dtype=np.float32)
    return hashlib.sha256(data).hexdigest(), sample


def _decode(path: Path, recipe: Recipe) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return recipe.preprocess(image)
    except Exception as exc:
        raise DataError(
            f"{path} decoded when the dataset was loaded but fails now ({type(exc).__name__}: {exc}); "
            "was it changed or removed?"
        ) from exc


# ---------------------------------------------------------------- arrays


MAX_NPY_HEADER = 1 << 16  # bytes of an .npy header (numpy's own default limit is 10,000)
MAX_ARRAY_BYTES = 1 << 40  # 1 TiB: refuses a header declaring an absurd shape before anything is allocated
ARRAY_KINDS = "biuf"  # bool, signed/unsigned integers, floats: what images and labels can be


def array_header(fh: "Any", source: str, total_bytes: int) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from an open ``.npy`` stream's header, checked before any data is read.

    Refused: not an ``.npy`` (bad magic, e.g. a non-array ``.npz`` member), format 3.0,
    a scalar (shape ``()``), negative or non-integer dimensions, object/structured/string
    dtypes, and a header declaring more bytes than the stream of ``total_bytes`` holds
    after the header, or than :data:`MAX_ARRAY_BYTES`.
    """
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, _fortran, dtype = npformat.read_array_header_1_0(fh, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, _fortran, dtype = npformat.read_array_header_2_0(fh, max_header_size=MAX_NPY_HEADER)
        else:
            raise ValueError(f".npy format {version[0]}.{version[1]} (edgeres reads 1.0 and 2.0)")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, OverflowError, RecursionError, MemoryError,
            tokenize.TokenError, zipfile.BadZipFile) as exc:
        # numpy parses the header with ast.literal_eval, and re-tokenizes a header it cannot parse
        # (tokenize.TokenError for an unbalanced one: found by tests/test_readers_fuzz.py)
        raise DataError(f"{source} is not a readable .npy array ({type(exc).__name__}: {str(exc)[:160]})") from None
    if not isinstance(shape, tuple) or not shape:
        raise DataError(f"{source} holds a scalar (shape {shape!r:.40}); expected an array of samples")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise DataError(f"{source} declares shape {shape!r:.80}; expected non-negative integer dimensions")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in ARRAY_KINDS:
        raise DataError(f"{source} has dtype {dtype.str!r}; expected a numeric array (float, integer or bool)")
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= d
    if nbytes > MAX_ARRAY_BYTES:
        raise DataError(f"{source} declares shape {shape} ({nbytes} bytes); expected at most {MAX_ARRAY_BYTES} bytes")
    available = total_bytes - fh.tell()
    if nbytes > available:
        raise DataError(f"{source} declares shape {shape} of {dtype.name} ({nbytes} bytes of data) but holds only "
                        f"{max(available, 0)}; the file is truncated or its header is wrong")
    return shape, dtype


def _open_npy(path: Path) -> np.ndarray:
    """Memory-map an ``.npy`` after checking its header (:func:`array_header`); FIFOs are refused unopened."""
    from edgeres._readers import check_regular_file

    size = check_regular_file(path, ".npy array", DataError).st_size
    try:
        with open(path, "rb") as fh:
            array_header(fh, str(path), size)  # raises DataError for anything refused
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{path}: not enough memory to map the array") from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({type(exc).__name__}: {exc})") from exc


def _npz_member(archive: zipfile.ZipFile, member: str, source: str) -> np.ndarray:
    """One ``.npz`` member as an array, its header checked before the data is read or allocated."""
    from numpy.lib import format as npformat

    info = archive.getinfo(member)
    what = f"{source}, member {member!r}"
    with archive.open(info) as fh:
        array_header(fh, what, info.file_size)
    try:
        with archive.open(info) as fh:
            return npformat.read_array(fh, allow_pickle=False)
    except MemoryError:
        raise DataError(f"{what}: not enough memory to load {info.file_size} bytes (use a .npy, which is "
                        "memory-mapped)") from None


def _open_npz(path: Path, split: str | None, num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    from edgeres._readers import check_regular_file

    if split is None:
        image_keys, label_keys = IMAGE_KEYS, LABEL_KEYS
    else:
        image_keys, label_keys = (f"{split}_images",), (f"{split}_labels",)
    check_regular_file(path, ".npz archive", DataError)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n[:-4] if n.endswith(".npy") else n: n for n in archive.namelist()}
            names = sorted(members)
            image_key = next((k for k in image_keys if k in members), None)
            if image_key is None:
                raise DataError(
                    f"{path} holds no images: expected an array named {' or '.join(map(repr, image_keys))}, "
                    f"found {names[:20]}"
                )
            label_key = next((k for k in label_keys if k in members), None)
            images = _npz_member(archive, members[image_key], str(path))
            labels = _npz_member(archive, members[label_key], str(path)) if label_key is not None else None
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, NotImplementedError) as exc:
        raise DataError(f"{path} is not a readable .npz archive ({type(exc).__name__}: {str(exc)[:160]})") from exc
    if labels is not None:
        labels = _as_labels(labels, len(images), path, num_classes)
    return images, labels


def _as_labels(labels: np.ndarray, count: int, path: Path, num_classes: int) -> np.ndarray:
    """int64 labels of shape (count,), integer class indices of the recipe's ``num_classes`` (checked before the cast)."""
    from edgeres.evaluate import check_labels

    if labels.ndim != 1 or len(labels) != count:
        raise DataError(f"{path}: expected labels of shape ({count},), received {tuple(labels.shape)}")
    return check_labels(labels, num_classes, str(path))


def array_layout(shape: tuple[int, ...], dtype: np.dtype, recipe: Recipe) -> str:
    """``"nchw_float"``, ``"nhwc_uint8"`` or ``"nhw_uint8"``; DataError (expected vs received) otherwise."""
    c = recipe.in_channels
    h, w = recipe.input_size
    expected = (
        f"float NCHW (N, {c}, {h}, {w}) normalized, or uint8 NHWC (N, {h}, {w}, {c}) raw pixels"
        + (f" or uint8 (N, {h}, {w})" if c == 1 else "")
    )
    received = f"{np.dtype(dtype).name} {tuple(shape)}"
    if np.issubdtype(dtype, np.floating) and len(shape) == 4:
        if shape[1] != c:
            raise DataError(f"expected {c} channel(s) at axis 1 of float NCHW data, received {received}; expected {expected}")
        if tuple(shape[2:]) != (h, w):
            raise DataError(f"expected spatial size {h}x{w}, received {shape[2]}x{shape[3]} in {received}; expected {expected}")
        return "nchw_float"
    if dtype == np.uint8 and len(shape) == 4:
        if shape[3] != c:
            raise DataError(f"expected {c} channel(s) at axis 3 of uint8 NHWC data, received {received}; expected {expected}")
        if tuple(shape[1:3]) != (h, w):
            raise DataError(f"expected spatial size {h}x{w}, received {shape[1]}x{shape[2]} in {received}; expected {expected}")
        return "nhwc_uint8"
    if dtype == np.uint8 and len(shape) == 3 and c == 1:
        if tuple(shape[1:3]) != (h, w):
            raise DataError(f"expected spatial size {h}x{w}, received {shape[1]}x{shape[2]} in {received}; expected {expected}")
        return "nhw_uint8"
    raise DataError(f"unsupported array {received}; expected {expected}")


def _array_dataset(
    images: np.ndarray, labels: np.ndarray | None, source: str, recipe: Recipe, size: int | None, seed: int
) -> Dataset:
    layout = array_layout(tuple(images.shape), images.dtype, recipe)
    count = len(images)
    if count == 0:
        raise DataError(f"{source} holds no samples (received shape {tuple(images.shape)})")
    if size is not None and size > count:
        raise DataError(f"requested {size} samples from {source}, but it holds only {count}")
    chosen = np.sort(choose(count, size, seed)[: size if size is not None else count])
    identities = _scan_arrays(images, chosen, source, check_finite=layout == "nchw_float")

    def read(positions: np.ndarray) -> np.ndarray:
        batch = np.asarray(images[chosen[positions]])
        if layout == "nchw_float":
            return batch.astype(np.float32, copy=False)
        if layout == "nhw_uint8":
            batch = batch[..., None]
        return recipe.normalize_uint8_nhwc(batch)

    return Dataset(
        source=source, recipe=recipe, reader=read, identities=identities,
        labels=None if labels is None else labels[chosen],
    )


def _scan_arrays(images: np.ndarray, chosen: np.ndarray, source: str, *, check_finite: bool) -> list[str]:
    """Identities (index + content sha256) of the chosen samples; DataError at the first NaN/Inf sample."""
    identities = []
    for start in range(0, len(chosen), _NAN_SCAN_SAMPLES):
        indices = chosen[start:start + _NAN_SCAN_SAMPLES]
        chunk = np.ascontiguousarray(images[indices])
        if check_finite:
            finite = np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
            if not finite.all():
                bad = int(indices[int(np.argmin(finite))])
                raise DataError(
                    f"{source}: sample {bad} contains NaN or Inf values; expected finite normalized inputs"
                )
        identities += [f"{int(i)}:{hashlib.sha256(s.tobytes()).hexdigest()}" for i, s in zip(indices, chunk)]
    return identities
