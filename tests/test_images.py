"""zoo.images: every format decodes to the right RGB pixels, and every bad file gets its reason."""

import io
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import damaged_inside, python_output
from PIL import Image

from zoo import images

RED = (255, 0, 0)


def png_16bit_rgb(path: Path, colour16: tuple[int, int, int], size: int = 8) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    row = b"\0" + struct.pack(">3H", *colour16) * size
    header = struct.pack(">2I5B", size, size, 16, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


def red(mode: str = "RGB", size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, RED).convert(mode)


def save_animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), colour) for colour in (RED, (0, 255, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)


#: name → (writer, expected pixel). Each is a format TensorFlow or Pillow must get right.
FORMATS = {
    "rgb.jpg": (lambda p: red().save(p), RED),
    "progressive.jpg": (lambda p: red().save(p, progressive=True), RED),
    "cmyk.jpg": (lambda p: red("CMYK").save(p), RED),
    "gray.jpg": (lambda p: Image.new("L", (20, 20), 200).save(p), (200, 200, 200)),
    "rgba.png": (lambda p: Image.new("RGBA", (20, 20), (*RED, 128)).save(p), RED),
    "palette.png": (lambda p: red("P").save(p), RED),
    "gray_alpha.png": (lambda p: Image.new("LA", (20, 20), (90, 255)).save(p), (90, 90, 90)),
    "sixteen_bit.png": (lambda p: png_16bit_rgb(p, (65535, 0, 0)), RED),
    "sixteen_bit_gray.png": (lambda p: Image.fromarray(np.full((20, 20), 65535, np.uint16)).save(p),
                             (255, 255, 255)),
    "rgb.bmp": (lambda p: red().save(p), RED),
    "palette.bmp": (lambda p: red("P").save(p), RED),  # TensorFlow alone decodes this as grey
    "one_bit.bmp": (lambda p: Image.new("1", (20, 20), 1).save(p), (255, 255, 255)),
    "animated.gif": (save_animated_gif, RED),  # the first frame
    "lossless.webp": (lambda p: red().save(p, lossless=True), RED),
    "animated.webp": (save_animated_gif, RED),  # the first frame
    "tiff_named.jpg": (lambda p: red().save(p, format="TIFF"), RED),
}


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_decodes_to_the_right_rgb(name, tmp_path):
    write, expected = FORMATS[name]
    path = tmp_path / name
    write(path)
    assert images.problem(path) == ""
    pixels = images.decode(path.read_bytes()).numpy()
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert np.abs(pixels.astype(int) - expected).max() <= 3, pixels[0, 0]


def test_a_very_large_image_is_resized_not_refused(tmp_path):
    from zoo.data import image_batches

    path = tmp_path / "huge.jpg"
    red(size=(8000, 8000)).save(path)
    assert images.problem(path) == ""
    [batch] = list(image_batches((str(path),), 32, 1))
    assert batch.shape == (1, 32, 32, 3)
    assert np.abs(batch.numpy()[0] - RED).max() <= 3


def test_a_large_gif_decodes_without_pillows_warning(tmp_path, monkeypatch):
    """Pillow decodes GIF and BMP in the bench's and predict's pipeline: its warning on a large
    image (over 89 megapixels) printed over the progress there, after the check had passed it."""
    import warnings

    from zoo.data import image_batches

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # so a small file stands in for a large one
    path = tmp_path / "large.gif"
    red(size=(40, 30)).save(path)  # 1200 pixels: warned of, not refused
    assert images.problem(path) == ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [batch] = list(image_batches((str(path),), 8, 1))
    assert np.abs(batch.numpy()[0] - RED).max() <= 3
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def encoded(image_format: str) -> bytes:
    """A noisy 64×64 image's file contents (noise, so cutting it anywhere cuts image data)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype("uint8")).save(
        buffer, image_format
    )
    return buffer.getvalue()


JPEG, PNG = encoded("JPEG"), encoded("PNG")
#: Where the JPEG's quantisation tables start: stray bytes put before them are what libjpeg
#: prints `Corrupt JPEG data: 3 extraneous bytes before marker 0xdb` about (the picture decodes).
DQT = JPEG.index(b"\xff\xdb")

CORRUPT_DATA = "damaged JPEG (corrupt compressed data)"
CONVERT = "file zoo cannot decode: convert it to JPEG or PNG"
BAD = {
    ".DS_Store": (b"\0\0\0\1Bud1", "hidden file"),
    "._photo.jpg": (b"\0\5\26\7", "hidden file"),  # a macOS resource fork beside a copied photo
    "Thumbs.db": (b"\xd0\xcf\x11\xe0", "not an image file type"),
    "notes.txt": (b"cats are great", "not an image file type"),
    "empty.jpg": (b"", "empty file"),
    "text.jpg": (b"<html>404 Not Found</html>", "not an image"),
    "half.jpg": (JPEG[: len(JPEG) // 2], "truncated or corrupt"),
    "cut_in_header.jpg": (JPEG[:300], "truncated or corrupt"),
    "no_end_marker.jpg": (JPEG[:-2], "truncated or corrupt"),  # what verify() lets through
    "stray_bytes.jpg": (JPEG[:DQT] + b"abc" + JPEG[DQT:], "damaged JPEG (stray bytes between its segments)"),
    "cut_in_iend.png": (PNG[:-3], "truncated or corrupt"),  # what Pillow's decoder lets through
    "cut_in_header.bmp": (encoded("BMP")[:30], "truncated or corrupt"),
    "cut_in_header.webp": (encoded("WEBP")[:20], "truncated or corrupt"),
    "half.webp": (encoded("WEBP")[: len(encoded("WEBP")) // 2], "truncated or corrupt"),
    "bm_text.bmp": (b"BMW owners' club: minutes of the meeting", "not an image"),  # was called a corrupt BMP
    "bm_text.jpg": (b"BM,2024-01-05,reading 17,reading 18", "not an image"),
    **{name: (contents, CORRUPT_DATA) for name, contents in damaged_inside(JPEG).items()},
    # other formats renamed .jpg, named for what they are (they were "not an image")
    "iphone.jpg": (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64), f"HEIC {CONVERT}"),
    "heif.jpg": (b"\0\0\0\x10ftypmif1\0\0\0\0" + bytes(64), f"HEIF {CONVERT}"),
    "scan.jpg": (encoded("PDF"), f"PDF {CONVERT}"),
    "jxl.png": (b"\xff\x0a\xfa\x7f" + bytes(64), f"JPEG XL {CONVERT}"),
}


@pytest.mark.parametrize("name", BAD)
def test_a_bad_file_gets_its_reason(name, tmp_path):
    contents, reason = BAD[name]
    path = tmp_path / name
    path.write_bytes(contents)
    assert images.problem(path) == reason


def test_libjpeg_complaints_are_traced_to_their_files_in_one_batch_and_never_printed(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(images, "BATCH", 8)
    files = [tmp_path / f"{index:02}.jpg" for index in range(24)]
    for path in files:
        path.write_bytes(JPEG)
    damaged = damaged_inside(JPEG)
    files[10].write_bytes(damaged["lost_block.jpg"])
    files[13].write_bytes(damaged["junk_at_end.jpg"])
    rechecked = []
    real_problem = images.problem
    monkeypatch.setattr(images, "problem", lambda path: rechecked.append(path) or real_problem(path))

    verdicts = images.check_files(tmp_path, files)
    assert verdicts == {path: CORRUPT_DATA if path in (files[10], files[13]) else "" for path in files}
    assert {files[10], files[13]} <= set(rechecked) <= set(files[8:16])  # only in the batch where libjpeg spoke
    printed = capfd.readouterr()
    assert "JPEG" not in printed.err + printed.out, printed


def test_a_broken_link_is_reported(tmp_path):
    link = tmp_path / "gone.jpg"
    link.symlink_to(tmp_path / "deleted.jpg")
    assert images.problem(link) == "broken link"


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # so a small file stands in for a bomb
    path = tmp_path / "bomb.png"
    red(size=(40, 30)).save(path)
    assert images.problem(path) == "too large"


def test_verdicts_are_cached_until_a_file_changes(tmp_path, monkeypatch):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    red().save(good)
    bad.write_bytes(b"not a picture")
    assert images.check_files(tmp_path, [good, bad]) == {good: "", bad: "not an image"}

    checked = []
    real_problem = images._problem  # what the check decodes each file with
    monkeypatch.setattr(images, "_problem", lambda path: checked.append(path.name) or real_problem(path))
    assert images.check_files(tmp_path, [good, bad]) == {good: "", bad: "not an image"}
    assert checked == []

    red().save(bad)  # fixed: new size and mtime
    assert images.check_files(tmp_path, [good, bad]) == {good: "", bad: ""}
    assert checked == ["bad.jpg"]


def test_a_verdict_is_renewed_when_a_file_is_made_readable_or_unreadable():
    """chmod changes no mtime: the cached verdict was kept, so a file made readable stayed
    skipped as unreadable, and one made unreadable failed the bench's decoding mid-row."""
    root = Path(tempfile.mkdtemp(prefix="zoo-chmod-"))  # outside pytest's root-only folder
    try:
        red().save(root / "photo.jpg")
        code = (
            "import os, sys\nfrom pathlib import Path\nimport tensorflow\nfrom zoo import images\n"
            "if os.geteuid() == 0:  # root reads any file: be nobody, after the imports\n"
            "    for path in (sys.argv[1], sys.argv[1] + '/photo.jpg'):\n        os.chown(path, 65534, 65534)\n"
            "    os.setgid(65534); os.setuid(65534)\n"
            "root = Path(sys.argv[1]); photo = root / 'photo.jpg'\n"
            "for mode in (0o644, 0, 0o644):\n"
            "    photo.chmod(mode)\n    print(images.check_files(root, [photo])[photo] or 'ok')\n"
        )
        said = python_output(code, str(root), env={**os.environ, "ZOO_CACHE_DIR": str(root / "cache")})
    finally:
        shutil.rmtree(root)
    assert said.split() == ["ok", "unreadable", "ok"]


def test_check_files_reports_progress(tmp_path):
    files = []
    for index in range(3):
        files.append(tmp_path / f"{index}.png")
        red().save(files[-1])
    calls = []
    images.check_files(tmp_path, files, lambda step, done, total: calls.append((step, done, total)))
    assert calls[-1] == ("checking images", 3, 3)


def bounded_problem(path: Path, memory_mb: int = 1024) -> str:
    """`problem(path)` in a process that may not map more than `memory_mb`."""
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({memory_mb} << 20, {memory_mb} << 20))\n"
        "from zoo.images import problem\n"
        "print(problem(Path(sys.argv[1])))\n"
    )
    return python_output(code, str(path))


def test_a_huge_sparse_file_named_like_an_image_is_refused_from_its_header(tmp_path):
    path = tmp_path / "x.jpg"
    with open(path, "wb") as handle:
        handle.truncate(40 * 2**30)  # 40 GB of zeros, sparse: no disk used
    assert bounded_problem(path) == "not an image"


def test_an_image_file_too_big_to_be_a_photo_is_refused_unread(tmp_path):
    path = tmp_path / "big.jpg"
    red().save(path)
    with open(path, "r+b") as handle:
        handle.truncate(images.MAX_FILE_BYTES + 1)
    assert bounded_problem(path, memory_mb=images.MAX_FILE_BYTES >> 20) == "too large"


@pytest.mark.slow  # a TensorFlow process of its own, to measure its memory
def test_an_animated_gif_costs_the_memory_of_its_first_frame_only(tmp_path):
    path = tmp_path / "long.gif"
    noise = np.random.default_rng(0).integers(0, 2, (200, 500, 500), dtype=np.uint8)
    frames = [Image.fromarray(frame, "P") for frame in noise]  # two colours, so no quantising
    frames[0].putpalette([0, 255, 0, 0, 0, 255])
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40)  # TensorFlow: 55 MB
    code = (
        "import resource, sys\n"
        "import tensorflow as tf\n"
        "from zoo.images import decode\n"
        "tf.constant(0)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "pixels = decode(tf.constant(open(sys.argv[1], 'rb').read())).numpy()\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(pixels.shape, pixels[0, 0].tolist(), grown >> 10)\n"
    )
    printed = python_output(code, str(path), timeout=120)
    assert printed.startswith("(500, 500, 3) "), printed
    grown = int(printed.split()[-1])
    assert grown < 20, f"decoding grew memory by {grown} MB"


def test_a_damaged_image_check_cache_is_a_rescan(tmp_path):
    good = tmp_path / "good.jpg"
    red().save(good)
    for damaged in ("null", "[]", '{"good.jpg": "ok"}', '{"good.jpg": [1, 2]}'):
        images._cache_file(tmp_path).write_text(damaged)
        assert images.check_files(tmp_path, [good]) == {good: ""}
