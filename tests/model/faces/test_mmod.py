"""The PyTorch port of dlib's CNN face detector finds dlib's own faces: the same boxes, the same scores."""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np
import pytest
from PIL import Image

from model.faces.decode import decode_image
from model.faces.mmod import MmodDetector, _tiling
from model.faces.pipeline import FacePipeline, dlib_model_path

CNN = "mmod_human_face_detector.dat"


@pytest.fixture(scope="module")
def detectors() -> tuple[MmodDetector, object]:
    return MmodDetector(Path(dlib_model_path(CNN))), dlib.cnn_face_detection_model_v1(dlib_model_path(CNN))


def dlibs(detector, image: np.ndarray) -> list[tuple]:  # noqa: ANN001 - dlib's type
    return [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence) for d in detector(image, 0)]


def assert_same(ours: list[tuple], theirs: list[tuple]) -> None:
    assert [box[:4] for box in ours] == [box[:4] for box in theirs]
    assert [box[4] for box in ours] == pytest.approx([box[4] for box in theirs], abs=1e-4)


def test_the_port_reads_dlibs_file_and_refuses_another():
    detector = MmodDetector(Path(dlib_model_path(CNN)))
    assert detector.options.window == (80, 80)
    assert detector.options.nms_iou == pytest.approx(0.338276, abs=1e-6)
    assert detector.options.mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    with pytest.raises(ValueError):
        MmodDetector(Path(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))


def test_the_tiled_pyramid_is_laid_out_as_dlibs():
    """Each level 5/6 of the one before, down the left-hand column 10 px apart, then up the right-hand side
    beside them, all inside the image and none overlapping another."""
    height, width, places = _tiling(236, 422)
    assert (places[0], places[1]) == ((11, 11, 432, 246), (11, 257, 361, 452))
    for rows, cols in ((236, 422), (316, 316), (100, 600), (600, 100), (48, 48)):
        height, width, places = _tiling(rows, cols)
        assert places[0] == (11, 11, 11 + cols - 1, 11 + rows - 1)
        sizes = [(bottom - top + 1, right - left + 1) for left, top, right, bottom in places]
        assert all(size == (int(5 / 6 * above[0]), int(5 / 6 * above[1]))
                   for above, size in zip(sizes, sizes[1:], strict=False))
        for k, a in enumerate(places):
            assert 0 <= a[0] and 0 <= a[1] and a[2] < width and a[3] < height
            for b in places[k + 1:]:
                assert max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3]) > 0, (rows, cols, a, b)


def test_the_port_finds_dlibs_faces_on_real_photos(detectors, testfaces, photos):
    """Every test face at the size the fallback looks at it, crops and shrunken copies (faces at other pyramid
    levels, and at the edges), two faces side by side, and a photo without a face."""
    ours, theirs = detectors
    pipeline = FacePipeline()
    images = []
    for path in sorted(testfaces.rglob("*.jpg"))[::3]:
        rgb = decode_image(path.read_bytes(), max_pixels=10**7)
        images += [pipeline.cnn_input(rgb)[0], np.ascontiguousarray(rgb[30:, 50:]),
                   np.asarray(Image.fromarray(rgb).resize((97, 130)))]
    pair = decode_image(photos.side_by_side(("Tony_Blair", 1), ("Colin_Powell", 1), 0.7), max_pixels=10**7)
    images += [pair, np.full((120, 160, 3), 90, np.uint8)]
    found = []
    for image in images:
        found.append(dlibs(theirs, image))
        assert_same(ours(image), found[-1])
    assert sum(map(len, found)) >= len(images) // 2 and len(found[-2]) == 2  # not vacuous: most hold a face


def test_the_port_finds_the_webcam_faces_hog_misses(detectors, shared_data):
    """The liveness sample's frames: only the CNN finds this man's face."""
    gif = shared_data / "liveness" / "webcam-head-turns.gif"
    if not gif.is_file():
        pytest.skip(f"the liveness samples are not at {gif.parent}")
    ours, theirs = detectors
    with Image.open(gif) as film:
        for number in (9, 17, 44, 66):
            film.seek(number)
            image = np.asarray(film.convert("RGB"))
            expected = dlibs(theirs, image)
            assert len(expected) == 1
            assert_same(ours(image), expected)
