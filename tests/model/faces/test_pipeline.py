import tarfile
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from model.faces.config import DATASET_POLICY, SERVICE_POLICY, PipelineConfig
from model.faces.decode import decode_image
from model.faces.errors import ImageTooLarge, InvalidImage, MultipleFaces
from model.faces.pipeline import _TEMPLATE_112, FacePipeline, key_points, similarity_transform
from model.faces.prepare import choose_face
from model.networks import crops_to_tensor
from tests.photos import encode


def test_similarity_transform_recovers_a_known_rotation_scale_and_shift():
    src = np.array([[10.0, 20.0], [30.0, 20.0], [20.0, 35.0]])
    angle, scale, shift = np.radians(30), 1.7, np.array([5.0, -3.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rotation.T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(matrix[:, :2], rotation) and np.allclose(matrix[:, 2], shift)


def test_key_points_order_eyes_left_to_right():
    five = np.array([[80, 50], [70, 50], [30, 50], [40, 50], [55, 70]], dtype=float)
    points = key_points(five)
    assert np.allclose(points, [[35, 50], [75, 50], [55, 70]])


def test_crops_to_tensor_maps_bytes_to_minus_one_one():
    crops = np.array([[[[0, 255, 127]]]], dtype=np.uint8)
    tensor = crops_to_tensor(crops)
    assert tensor.shape == (1, 3, 1, 1)
    assert tensor.flatten().tolist() == pytest.approx([-1.0, 1.0, -0.0039], abs=1e-3)


def test_decode_makes_rgb_from_any_mode():
    for mode in ("L", "RGBA", "CMYK", "P", "I;16"):
        image = Image.new(mode, (20, 10))
        fmt = "PNG" if mode in ("RGBA", "P", "I;16", "L") else "JPEG"
        rgb = decode_image(encode(image, fmt), max_pixels=1000)
        assert rgb.shape == (10, 20, 3) and rgb.dtype == np.uint8, mode


def test_decode_makes_transparent_pixels_white():
    rgb = decode_image(encode(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), "PNG"), max_pixels=100)
    assert (rgb == 255).all()


def test_decode_refuses_too_many_pixels_and_garbage():
    with pytest.raises(ImageTooLarge):
        decode_image(encode(Image.new("L", (100, 100)), "PNG"), max_pixels=9_999)
    with pytest.raises(InvalidImage):
        decode_image(b"GIF89a-not-really", max_pixels=10_000)


def test_aligned_eyes_land_on_the_template(testfaces):
    pipeline = FacePipeline(PipelineConfig(crop_size=112))
    rgb = decode_image((testfaces / "lfw/Tony_Blair/Tony_Blair_0001.jpg").read_bytes(), max_pixels=10**7)
    [face] = pipeline.detect(rgb)
    crop = pipeline.align(rgb, face)
    assert crop.shape == (112, 112, 3)
    # Landmarks found again on the aligned crop sit where the template puts them.
    again = pipeline.detect(np.ascontiguousarray(np.kron(crop, np.ones((3, 3, 1), np.uint8))))
    eyes = key_points(np.asarray(again[0].landmarks)) / 3
    assert np.abs(eyes[:2] - _TEMPLATE_112[:2]).max() < 4


def test_dlibs_chip_at_another_size_is_the_same_face_scaled(testfaces):
    """A student distilled from dlib's network takes dlib's chip at its own size: the 150 px chip, resized."""
    rgb = decode_image((testfaces / "lfw/Hugo_Chavez/Hugo_Chavez_0001.jpg").read_bytes(), max_pixels=10**7)
    full, small = (FacePipeline(PipelineConfig(crop_size=size, chip="dlib-chip-v1")) for size in (150, 112))
    [face] = full.detect(rgb)
    chip = small.align(rgb, face)
    assert chip.shape == (112, 112, 3)
    resized = np.asarray(Image.fromarray(full.align(rgb, face)).resize((112, 112), Image.Resampling.BILINEAR))
    difference = np.abs(chip.astype(int) - resized.astype(int))
    assert difference.mean() < 2  # 0.7 grey levels: only the resampling differs
    shifted = np.abs(chip[:, 4:].astype(int) - resized[:, :-4].astype(int)).mean()
    assert shifted > 5 * difference.mean()  # the same face 4 px aside differs by 14


def test_a_big_photo_is_detected_on_a_bounded_copy_and_boxed_in_its_own_pixels(testfaces):
    pipeline = FacePipeline(PipelineConfig(detect_max_side=320))
    small = Image.open(testfaces / "lfw/Colin_Powell/Colin_Powell_0001.jpg")
    big = np.asarray(small.resize((1000, 1000)))
    [face_small] = pipeline.detect(np.asarray(small))
    [face_big] = pipeline.detect(big)
    # Boxes come from the bounded copy's pyramid; landmarks are read on the full photo and scale exactly.
    assert abs(face_big.width - 4 * face_small.width) < 0.25 * 4 * face_small.width
    small_points = key_points(np.asarray(face_small.landmarks)) * 4
    assert np.abs(key_points(np.asarray(face_big.landmarks)) - small_points).max() < 12


def test_every_test_face_is_found(testfaces):
    pipeline = FacePipeline()
    photos = sorted(testfaces.rglob("*.jpg"))
    assert len(photos) == 36
    for path in photos:
        assert pipeline.detect(decode_image(path.read_bytes(), max_pixels=10**7)), path


def test_adaptive_upsampling_still_finds_small_faces_and_agrees_on_large_ones(testfaces):
    photo = Image.open(testfaces / "lfw" / "Tony_Blair" / "Tony_Blair_0001.jpg").convert("RGB")
    adaptive = FacePipeline(PipelineConfig(adaptive_upsample=True))
    always = FacePipeline(PipelineConfig(adaptive_upsample=False))
    assert adaptive.config.upsample_schedule == (0, 1) and always.config.upsample_schedule == (1,)
    small = np.asarray(photo.resize((110, 110)))  # a face of about 55 px: only the upsampled pass sees it
    assert adaptive.detect_boxes(small) and adaptive._hog(small, 0) == []
    large = np.asarray(photo)
    a, b = adaptive.detect(large)[0], always.detect(large)[0]
    assert np.abs(np.array(a.landmarks) - np.array(b.landmarks)).max() <= 3  # the same face, the same points


def _close_up(testfaces, name: str, side: int, crop: int = 150) -> np.ndarray:
    """An LFW test photo's centre `crop` px (its face, and little more) as a `side` px square: the face as a
    camera close to it frames it."""
    photo = Image.open(testfaces / "lfw" / name.rsplit("_", 1)[0] / f"{name}.jpg").convert("RGB")
    left, top = 125 - crop // 2, 115 - crop // 2
    return np.asarray(photo.crop((left, top, left + crop, top + crop)).resize((side, side), Image.Resampling.LANCZOS))


def test_a_coarse_look_settles_a_close_up_and_finds_the_same_face(testfaces):
    coarse = FacePipeline(PipelineConfig(coarse_side=320))
    usual = FacePipeline(PipelineConfig())
    rgb = _close_up(testfaces, "Colin_Powell_0001", 640)
    assert coarse._coarse(rgb, SERVICE_POLICY), "a face of 60 % of the frame is found in a quarter of its pixels"
    [a] = usual.detect(rgb, policy=SERVICE_POLICY)
    [b] = coarse.detect(rgb, policy=SERVICE_POLICY)
    assert abs(a.width - b.width) < 0.25 * a.width
    # landmarks are read on the full photo either way: the same points, within a few pixels of 640
    assert np.abs(np.array(a.landmarks) - np.array(b.landmarks)).max() < 8


def test_a_coarse_look_stands_only_where_nothing_it_could_miss_would_change_the_choice(testfaces):
    coarse = FacePipeline(PipelineConfig(coarse_side=320))
    close_up = _close_up(testfaces, "Colin_Powell_0001", 640)
    # `reject` and `centre` need every face, however small
    for policy in (replace(SERVICE_POLICY, multi_face="reject"), DATASET_POLICY):
        assert coarse._coarse(close_up, policy) == []
    assert coarse.detect(close_up, policy=replace(SERVICE_POLICY, multi_face="reject"))
    # a face too small to settle it (a face the coarse look cannot see could contest it): the usual look finds it
    far = np.full((640, 640, 3), 128, np.uint8)
    far[195:445, 195:445] = np.asarray(Image.open(testfaces / "lfw/Colin_Powell/Colin_Powell_0001.jpg"))
    assert coarse._coarse(far, SERVICE_POLICY) == [] and coarse.detect(far, policy=SERVICE_POLICY)
    # a photo of 250 px is looked at once, as before
    small = np.asarray(Image.open(testfaces / "lfw/Colin_Powell/Colin_Powell_0001.jpg"))
    assert coarse._coarse(small, SERVICE_POLICY) == []


def test_two_people_the_coarse_look_sees_are_refused_as_without_it(testfaces):
    pair = np.hstack([_close_up(testfaces, name, 320, crop=130) for name in ("Colin_Powell_0001", "Tony_Blair_0001")])
    for side in (0, 320):
        pipeline = FacePipeline(PipelineConfig(coarse_side=side))
        faces = pipeline.detect(pair, policy=SERVICE_POLICY)
        assert len(faces) == 2, side
        with pytest.raises(MultipleFaces):
            choose_face(faces, SERVICE_POLICY, pair.shape)
    assert FacePipeline(PipelineConfig(coarse_side=320))._coarse(pair, SERVICE_POLICY)


def test_crops_to_tensor_keeps_a_tensor_on_its_device_and_refuses_floats():
    crops = torch.full((2, 4, 4, 3), 255, dtype=torch.uint8)
    assert torch.equal(crops_to_tensor(crops), torch.ones(2, 3, 4, 4))
    with pytest.raises(TypeError):
        crops_to_tensor(crops.float())


def test_the_cnn_fallback_looks_at_no_more_pixels_than_its_budget():
    pipeline = FacePipeline(PipelineConfig(cnn_max_pixels=100_000))
    camera = np.zeros((3000, 4000, 3), np.uint8)  # 12 MP
    copy, scale = pipeline.cnn_input(camera)
    assert 99_000 <= copy.shape[0] * copy.shape[1] <= 100_000 and copy.shape[:2] == (273, 365)
    small = np.zeros((109, 89, 3), np.uint8)  # a CelebA-aligned photo: upsampled twice at most, to find 40 px faces
    copy, scale = pipeline.cnn_input(small)
    assert scale == 2.0 and copy.shape[:2] == (218, 178)
    assert pipeline.cnn_input(np.zeros((20, 2000, 3), np.uint8)) is None  # a strip too thin for the CNN's filters


def test_the_cnn_fallback_finds_a_face_that_hog_misses(shared_data):
    with tarfile.open(shared_data / "lfw-deepfunneled.tar") as archive:
        data = archive.extractfile("lfw-deepfunneled/Abdoulaye_Wade/Abdoulaye_Wade_0003.jpg").read()
    rgb = decode_image(data, max_pixels=10**7)
    pipeline = FacePipeline()
    assert not any(pipeline._hog(rgb, upsample) for upsample in pipeline.config.upsample_schedule)
    stages = []

    @contextmanager
    def timer(stage):
        stages.append(stage)
        yield

    [face] = pipeline.detect(rgb, timer)
    assert face.detector == "cnn" and 90 <= face.width <= 130 and stages == ["detect_fallback"]
    one_eye, other_eye = np.asarray(face.landmarks[0:2]).mean(axis=0), np.asarray(face.landmarks[2:4]).mean(axis=0)
    assert 30 < np.linalg.norm(one_eye - other_eye) < 70  # the landmarks are a face's, read at full resolution
    assert FacePipeline(PipelineConfig(cnn_fallback=False)).detect(rgb) == []
