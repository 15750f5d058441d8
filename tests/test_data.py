"""Tests for edgeres.data: image folders, .npy/.npz arrays, determinism, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeres.data import Dataset, load_dataset
from edgeres.errors import DataError, EdgeresError
from edgeres.recipe import Recipe

RGB8 = Recipe(input_size=(8, 8), in_channels=3, resize=None, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_classes=3)
GRAY8 = Recipe(input_size=(8, 8), in_channels=1, resize=None, mean=(0.5,), std=(0.25,), num_classes=10)


def _pixels(seed: int, shape: tuple[int, ...] = (10, 12, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _image_folder(root: Path, per_class: int = 4, classes: tuple[str, ...] = ("cat", "dog", "eel")) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            fmt = "png" if i % 2 == 0 else "jpg"
            Image.fromarray(_pixels(100 * c + i)).save(root / name / f"img{i}.{fmt}")
    return root


def test_image_folder_labels_from_sorted_class_folders(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "set")
    ds = load_dataset(root, RGB8, require_labels=True)
    assert len(ds) == 12, f"expected 12 images, got {len(ds)}"
    assert ds.classes == ["cat", "dog", "eel"], f"classes {ds.classes}"
    assert ds.labels is not None and ds.labels.dtype == np.int64, f"labels {ds.labels}"
    assert ds.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4, f"labels {ds.labels.tolist()}"
    x = ds.array()
    assert x.shape == (12, 3, 8, 8) and x.dtype == np.float32 and x.flags.c_contiguous, f"{x.shape} {x.dtype}"
    assert ds.skipped == [], f"nothing should be skipped: {ds.skipped}"


def test_image_pixels_match_recipe_preprocess(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    Image.fromarray(_pixels(1)).save(root / "a.png")
    ds = load_dataset(root, RGB8)
    expected = RGB8.preprocess(Image.open(root / "a.png"))
    assert np.array_equal(ds.array()[0], expected), "folder samples must equal Recipe.preprocess output"
    assert ds.labels is None and ds.classes is None, "a flat folder has no labels"


def test_corrupt_files_skipped_and_reported(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "set", per_class=2)
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = root / "dog" / "img0.png"
    (root / "dog" / "truncated.png").write_bytes(good.read_bytes()[:60])
    (root / "eel" / "empty.jpg").write_bytes(b"")
    ds = load_dataset(root, RGB8)
    assert len(ds) == 6, f"expected the 6 good images, got {len(ds)}"
    skipped = sorted(Path(p).name for p, _ in ds.skipped)
    assert skipped == ["broken.png", "empty.jpg", "truncated.png"], f"skipped {ds.skipped}"
    assert all(reason for _, reason in ds.skipped), f"every skip needs a reason: {ds.skipped}"
    assert ds.array().shape == (6, 3, 8, 8), "batches must only contain readable images"


def test_rgba_grayscale_and_palette_images_converted(tmp_path: Path) -> None:
    root = tmp_path / "modes"
    root.mkdir()
    Image.fromarray(_pixels(2, (9, 9, 4)), "RGBA").save(root / "a_rgba.png")
    Image.fromarray(_pixels(3, (9, 9)), "L").save(root / "b_gray.png")
    Image.fromarray(_pixels(4)).convert("P").save(root / "c_pal.bmp")
    Image.fromarray(_pixels(5)).save(root / "d.webp")
    rgb = load_dataset(root, RGB8).array()
    gray = load_dataset(root, GRAY8).array()
    assert rgb.shape == (4, 3, 8, 8), f"RGB recipe got {rgb.shape}"
    assert gray.shape == (4, 1, 8, 8), f"grayscale recipe got {gray.shape}"
    gray_rgb = rgb[1]
    assert np.allclose(gray_rgb[0], gray_rgb[1]) and np.allclose(gray_rgb[1], gray_rgb[2]), "L -> RGB repeats channels"


def test_size_is_deterministic_and_independent_of_creation_order(tmp_path: Path) -> None:
    names = [f"{i:02d}.png" for i in range(20)]
    roots = []
    for label, order in (("a", names), ("b", names[::-1])):
        root = tmp_path / label
        root.mkdir()
        for name in order:
            Image.fromarray(_pixels(int(name[:2]))).save(root / name)
        roots.append(root)
    first = load_dataset(roots[0], RGB8, size=7, seed=3)
    again = load_dataset(roots[0], RGB8, size=7, seed=3)
    reversed_ = load_dataset(roots[1], RGB8, size=7, seed=3)
    other_seed = load_dataset(roots[0], RGB8, size=7, seed=4)
    assert first.identities == again.identities == reversed_.identities, "same source/size/seed -> same samples"
    assert first.fingerprint() == reversed_.fingerprint(), "fingerprint must not depend on file-system order"
    assert np.array_equal(first.array(), reversed_.array()), "same samples -> same pixels"
    assert other_seed.fingerprint() != first.fingerprint(), "another seed should pick other samples"
    names_chosen = [i.split(":")[0] for i in first.identities]
    assert names_chosen == sorted(names_chosen), f"chosen samples come in sorted order: {names_chosen}"


def test_size_skips_corrupt_and_still_delivers_size(tmp_path: Path) -> None:
    root = tmp_path / "set"
    root.mkdir()
    for i in range(6):
        Image.fromarray(_pixels(i)).save(root / f"{i}.png")
    for i in range(6):
        (root / f"bad{i}.png").write_bytes(b"garbage")
    ds = load_dataset(root, RGB8, size=5, seed=0)
    assert len(ds) == 5, f"expected 5 readable samples, got {len(ds)}"
    assert all(not i.startswith("bad") for i in ds.identities), f"corrupt files chosen: {ds.identities}"
    with pytest.raises(DataError, match=r"requested 7 samples.*only 6 readable.*6 unreadable"):
        load_dataset(root, RGB8, size=7)


def test_batches_of_any_size_concatenate_to_same_array(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "set", per_class=3)
    ds = load_dataset(root, RGB8)
    whole = ds.array(batch_size=100)
    for batch_size in (1, 4, 5, 9):
        parts = list(ds.batches(batch_size))
        assert [len(x) for x, _ in parts][:-1] == [batch_size] * (len(parts) - 1), f"batch sizes {batch_size}"
        assert np.array_equal(np.concatenate([x for x, _ in parts]), whole), f"batch_size={batch_size} differs"
        labels = np.concatenate([y for _, y in parts])
        assert np.array_equal(labels, ds.labels), f"labels differ for batch_size={batch_size}"
    with pytest.raises(DataError, match="batch size"):
        next(ds.batches(0))


def test_npy_nchw_float_memory_mapped(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((10, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ds = load_dataset(tmp_path / "x.npy", RGB8)
    assert np.array_equal(ds.array(batch_size=3), x), "float NCHW must pass through unchanged"
    assert ds.labels is None, ".npy has no labels"
    sub = load_dataset(tmp_path / "x.npy", RGB8, size=4, seed=1)
    idx = [int(i.split(":")[0]) for i in sub.identities]
    assert idx == sorted(idx) and len(set(idx)) == 4, f"indices {idx}"
    assert np.array_equal(sub.array(), x[idx]), "subset must be the chosen rows"


def test_npy_uint8_nhwc_normalized_by_recipe(tmp_path: Path) -> None:
    raw = _pixels(7, (5, 8, 8, 3))
    np.save(tmp_path / "raw.npy", raw)
    ds = load_dataset(tmp_path / "raw.npy", RGB8)
    expected = (raw.astype(np.float32) / 255.0 - 0.5) / 0.25
    assert np.allclose(ds.array(), expected.transpose(0, 3, 1, 2), atol=1e-5), "uint8 NHWC normalization"
    gray = _pixels(8, (5, 8, 8))
    np.save(tmp_path / "gray.npy", gray)
    assert load_dataset(tmp_path / "gray.npy", GRAY8).array().shape == (5, 1, 8, 8), "uint8 NHW for 1 channel"


def test_npz_both_layouts_with_labels(tmp_path: Path) -> None:
    raw = _pixels(9, (6, 8, 8, 3))
    np.savez(tmp_path / "a.npz", images=raw, labels=np.arange(6) % 3)
    x = np.random.default_rng(1).standard_normal((6, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "b.npz", x=x, y=np.array([2, 1, 0, 2, 1, 0], dtype=np.int32))
    a = load_dataset(tmp_path / "a.npz", RGB8, require_labels=True)
    b = load_dataset(tmp_path / "b.npz", RGB8, require_labels=True, size=3, seed=5)
    assert a.labels.tolist() == [0, 1, 2, 0, 1, 2], f"labels {a.labels}"
    idx = [int(i.split(":")[0]) for i in b.identities]
    assert b.labels.dtype == np.int64 and b.labels.tolist() == [[2, 1, 0, 2, 1, 0][i] for i in idx], "labels follow choice"
    assert np.array_equal(b.array(), x[idx]), "npz float rows"
    np.savez(tmp_path / "s.npz", calib_images=raw[:2], calib_labels=np.array([1, 2]))
    s = load_dataset(f"{tmp_path / 's.npz'}#calib", RGB8, require_labels=True)
    assert len(s) == 2 and s.labels.tolist() == [1, 2], "file.npz#split selects split_images/split_labels"


def test_nan_and_inf_name_first_bad_sample(tmp_path: Path) -> None:
    x = np.zeros((600, 3, 8, 8), dtype=np.float32)
    x[513, 1, 2, 3] = np.nan
    x[570, 0, 0, 0] = np.inf
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(DataError, match=r"sample 513 contains NaN or Inf"):
        load_dataset(tmp_path / "nan.npy", RGB8)
    x[513] = 0
    np.savez(tmp_path / "inf.npz", images=x)
    with pytest.raises(DataError, match=r"sample 570"):
        load_dataset(tmp_path / "inf.npz", RGB8)


@pytest.mark.parametrize(
    "shape,dtype,pattern",
    [
        ((4, 1, 8, 8), np.float32, r"expected 3 channel\(s\).*received float32 \(4, 1, 8, 8\)"),
        ((4, 3, 16, 16), np.float32, r"expected spatial size 8x8, received 16x16"),
        ((4, 8, 8, 4), np.uint8, r"expected 3 channel\(s\) at axis 3"),
        ((4, 9, 8, 3), np.uint8, r"expected spatial size 8x8, received 9x8"),
        ((4, 8, 8, 3), np.int64, r"unsupported array int64"),
        ((8, 8, 3), np.float32, r"unsupported array float32 \(8, 8, 3\)"),
    ],
)
def test_wrong_array_shapes_say_expected_vs_received(tmp_path: Path, shape, dtype, pattern) -> None:
    np.save(tmp_path / "bad.npy", np.zeros(shape, dtype=dtype))
    with pytest.raises(DataError, match=pattern):
        load_dataset(tmp_path / "bad.npy", RGB8)


def test_missing_empty_and_unlabelled_sources(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope", RGB8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no image files"):
        load_dataset(tmp_path / "empty", RGB8)
    (tmp_path / "allbad").mkdir()
    (tmp_path / "allbad" / "x.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="no readable image"):
        load_dataset(tmp_path / "allbad", RGB8)
    np.save(tmp_path / "x.npy", np.zeros((3, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match="has no labels, but labels are required"):
        load_dataset(tmp_path / "x.npy", RGB8, require_labels=True)
    with pytest.raises(DataError, match="requested 4 samples.*only 3"):
        load_dataset(tmp_path / "x.npy", RGB8, size=4)
    np.save(tmp_path / "e.npy", np.zeros((0, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match="holds no samples"):
        load_dataset(tmp_path / "e.npy", RGB8)
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported data source"):
        load_dataset(tmp_path / "t.txt", RGB8)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(tmp_path / "junk.npz", RGB8)
    np.savez(tmp_path / "k.npz", pixels=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"expected an array named 'images' or 'x'"):
        load_dataset(tmp_path / "k.npz", RGB8)
    with pytest.raises(DataError, match="size must be a positive"):
        load_dataset(tmp_path / "x.npy", RGB8, size=0)
    assert issubclass(DataError, EdgeresError), "DataError must be an EdgeresError for the CLI"


@pytest.mark.parametrize(
    "labels, pattern",
    [
        (np.array([0, 7]), r"labels range over \[0, 7\], expected class indices 0 to 2 \(the model has 3 classes\)"),
        (np.array([-1, 1]), r"labels range over \[-1, 1\]"),
        (np.array([0, 2**64 - 1], np.uint64), r"labels range over \[0, 18446744073709551615\]"),  # not wrapped to -1
        (np.array([0, 2**63], np.uint64), r"expected class indices 0 to 2"),
        (np.array([0.0, 1.0]), "expected integer class labels, received dtype float64"),
        (np.array([True, False]), "expected integer class labels, received dtype bool"),
    ],
    ids=["beyond-classes", "negative", "uint64-max", "uint64-2^63", "float", "bool"],
)
def test_labels_out_of_range_for_model(tmp_path: Path, labels: np.ndarray, pattern: str) -> None:
    """Labels are checked against the recipe's classes where they are read, required or not."""
    np.savez(tmp_path / "l.npz", images=np.zeros((2, 8, 8, 3), np.uint8), labels=labels)
    for require in (False, True):
        with pytest.raises(DataError, match=pattern):
            load_dataset(tmp_path / "l.npz", RGB8, require_labels=require)


def test_image_folder_with_more_classes_than_the_model(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "imgs", per_class=1, classes=("a", "b", "c", "d"))
    with pytest.raises(DataError, match="has 4 class folders .* but the model has 3 classes"):
        load_dataset(root, RGB8)
    assert len(load_dataset(root, GRAY8.replace(in_channels=3, mean=(0.5,) * 3, std=(0.25,) * 3))) == 4, (
        "four class folders are fine for a 10-class model"
    )


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    x = np.zeros((4, 3, 8, 8), np.float32)
    np.save(tmp_path / "a.npy", x)
    x[2, 0, 0, 0] = 1.0
    np.save(tmp_path / "b.npy", x)
    fa = load_dataset(tmp_path / "a.npy", RGB8).fingerprint()
    fb = load_dataset(tmp_path / "b.npy", RGB8).fingerprint()
    assert fa != fb and len(fa) == 64, "fingerprint must hash sample contents"
    assert isinstance(load_dataset(tmp_path / "a.npy", RGB8), Dataset), "load_dataset returns a Dataset"


def test_importing_data_does_not_import_torch() -> None:
    code = "import sys, edgeres.data; assert 'torch' not in sys.modules and 'onnx' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"edgeres.data imported torch/onnx: {result.stderr}"


# ---- issue 14: .npy/.npz headers are checked before anything is mapped or allocated ---------------

def npy_with_header(header: str, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A raw .npy file with a hand-written header dict (np.lib.format layout: magic, version, length, header)."""
    import struct

    body = header.encode("latin1")
    prefix = b"\x93NUMPY" + bytes(version)
    length_format = "<H" if version == (1, 0) else "<I"
    pad = (-(len(prefix) + struct.calcsize(length_format) + len(body) + 1)) % 64
    body = body + b" " * pad + b"\n"
    return prefix + struct.pack(length_format, len(body)) + body + data


HOSTILE_HEADERS = [
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 3, 8, 8), }", "declares shape"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (-5, 3, 8, 8), }", "non-negative"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", "scalar"),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (1, 3, 8, 8), }", "numeric array"),
    ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "numeric array"),
    ("{'descr': '<U4', 'fortran_order': False, 'shape': (1, 3, 8, 8), }", "numeric array"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 8, 8), }", "truncated"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': 'x', }", "not a readable"),
    ("not a dict at all", "not a readable"),
]


@pytest.mark.parametrize("header, needle", HOSTILE_HEADERS)
def test_hostile_npy_headers_are_one_data_error(tmp_path: Path, header: str, needle: str) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(npy_with_header(header, b"\x00" * 16))
    with pytest.raises(DataError, match=needle):
        load_dataset(path, RGB8)


def test_npy_format_3_and_empty_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", b"\0" * 4, (3, 0)))
    with pytest.raises(DataError, match="format 3.0"):
        load_dataset(path, RGB8)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="not a readable .npy"):
        load_dataset(path, RGB8)


def test_npz_members_are_checked_before_loading(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images.npy", npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 3, 8, 8), }"))
    with pytest.raises(DataError, match="member 'images.npy'.*declares shape"):
        load_dataset(path, RGB8)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images.npy", b"this is not an array")
    with pytest.raises(DataError, match="not a readable .npy"):
        load_dataset(path, RGB8)
    good = np.zeros((2, 3, 8, 8), np.float32)
    with zipfile.ZipFile(path, "w") as zf:
        import io

        buf = io.BytesIO()
        np.save(buf, good)
        zf.writestr("images.npy", buf.getvalue())
        zf.writestr("labels.npy", npy_with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (), }", b"\0" * 8))
    with pytest.raises(DataError, match="scalar"):
        load_dataset(path, RGB8)


def test_fifo_as_npy_is_refused_not_waited_on(tmp_path: Path) -> None:
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs")
    os.mkfifo(tmp_path / "x.npy")
    with pytest.raises(DataError, match="FIFO"):
        load_dataset(tmp_path / "x.npy", RGB8)


def test_folder_samples_decoded_at_load_equal_the_streamed_ones(tmp_path: Path, monkeypatch) -> None:
    import edgeres.data as data

    root = _image_folder(tmp_path / "set")
    kept = load_dataset(root, RGB8, size=7, seed=3)
    decodes: list[str] = []
    original = data._decode
    monkeypatch.setattr(data, "_decode", lambda path, recipe: decodes.append(path.name) or original(path, recipe))
    from_load = kept.array(batch_size=3)
    assert decodes == [], f"samples decoded at load time were decoded again: {decodes}"
    monkeypatch.setattr(data, "KEEP_DECODED_BYTES", 0)  # too large to keep: streamed from disk, as before
    streamed = load_dataset(root, RGB8, size=7, seed=3)
    from_disk = streamed.array(batch_size=3)
    assert len(decodes) == 7, f"a selection over the memory bound must decode on demand, decoded {decodes}"
    assert np.array_equal(from_load, from_disk), "kept samples must equal the ones decoded from disk"
    assert kept.identities == streamed.identities, "keeping decoded samples must not change the selection"
