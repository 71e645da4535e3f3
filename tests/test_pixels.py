"""A video file's frames stay in the decoder's YUV planes; what the analysis cuts from them equals
what it would cut from the frame decoded to BGR (OpenCV's decode of the same file)."""

import cv2
import numpy as np
import pytest

from edgeemo.sources.reader import FrameReader
from edgeemo.sources.spec import parse_source
from edgeemo.vision.classifier import ExpressionClassifier, crop_faces
from edgeemo.config.schema import Config, DetectorConfig
from edgeemo.vision.detector import FaceDetector
from edgeemo.core.modelcard import load_card
from edgeemo.core.resources import models_dir, sample_video
from edgeemo.core.types import Yuv420
from edgeemo.vision.analysis import model_paths
from edgeemo.vision.pixels import region, shrink, shrunk_bgr, small_grey, to_bgr


@pytest.fixture(scope="module")
def pair() -> tuple[Yuv420, np.ndarray]:
    """Frame 30 of the sample from our reader (planes) and from OpenCV (BGR)."""
    reader = FrameReader(parse_source(str(sample_video())))
    for _ in range(31):
        image, _ = reader.read()
    reader.close()
    capture = cv2.VideoCapture(str(sample_video()))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 30)
    ok, bgr = capture.read()
    assert ok
    return image, bgr


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b).mean())


def test_a_video_file_is_read_as_planes_that_convert_to_its_bgr_frame(pair):
    yuv, bgr = pair
    assert isinstance(yuv, Yuv420) and yuv.shape == bgr.shape
    assert yuv.y.base is not None  # a view of the decoder's frame, not a copy
    assert mean_difference(to_bgr(yuv), bgr) < 2.0  # chroma upsampling differs a little


def test_a_region_of_the_planes_is_the_region_of_the_converted_frame(pair):
    yuv = pair[0]
    part, x0, y0 = region(yuv, 101, 37, 300, 251)
    assert (x0, y0) == (100, 36) and part.shape[:2] == (216, 200)  # corners out to even pixels
    assert np.array_equal(to_bgr(part), to_bgr(yuv)[36:252, 100:300])


def test_shrunk_and_grey_copies_equal_those_of_the_bgr_frame(pair):
    yuv, bgr = pair
    ours, sx, sy = shrunk_bgr(yuv, 320, 180)
    theirs, tx, ty = shrink(bgr, 320, 180)
    assert (sx, sy) == (tx, ty) and ours.shape == theirs.shape and mean_difference(ours, theirs) < 2.0
    odd, _, _ = shrunk_bgr(region(yuv, 0, 0, 251, 201)[0], 63, 51)
    assert odd.shape == (51, 63, 3)
    assert mean_difference(small_grey(yuv, 178, 100), small_grey(bgr, 178, 100)) < 1.5


def test_faces_and_readings_from_planes_equal_those_from_bgr(pair):
    yuv, bgr = pair
    detector = FaceDetector(DetectorConfig(), models_dir() / "yunet_s_dynamic.onnx")
    faces, reference = detector.detect(yuv), detector.detect(bgr)
    assert len(faces) == len(reference) == 1
    eyes = np.linalg.norm(reference.landmarks[0, 0] - reference.landmarks[0, 1])
    # YuNet's own jitter: a grey level here and there moves a landmark by a pixel or two at 320 px
    assert np.abs(faces.landmarks - reference.landmarks).max() < 0.06 * eyes
    card = load_card(model_paths(Config())[1])
    assert mean_difference(crop_faces(yuv, faces, card), crop_faces(bgr, faces, card)) < 3.0
    classifier = ExpressionClassifier(Config().classifier, card)
    ours, theirs = classifier.classify(yuv, faces), classifier.classify(bgr, faces)
    assert ours.argmax() == theirs.argmax() and np.abs(ours - theirs).max() < 0.05


def test_frames_kept_after_the_reader_moved_on_and_closed_keep_their_pixels():
    reader = FrameReader(parse_source(str(sample_video())))
    kept = [reader.read()[0] for _ in range(12)]
    first = to_bgr(kept[0]).copy()
    reader.close()
    again = FrameReader(parse_source(str(sample_video())))
    assert np.array_equal(to_bgr(again.read()[0]), first) and np.array_equal(to_bgr(kept[0]), first)
    again.close()


def test_a_video_in_another_pixel_layout_is_read_as_bgr(tmp_path):
    path = tmp_path / "mjpeg.avi"  # decoded as yuvj420p (full range), not yuv420p
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 90))
    for k in range(5):
        writer.write(np.full((90, 160, 3), 40 * k, np.uint8))
    writer.release()
    reader = FrameReader(parse_source(str(path)))
    frames = []
    while (item := reader.read()) is not None:
        frames.append(item[0])
    reader.close()
    assert len(frames) == 5 and all(isinstance(f, np.ndarray) and f.shape == (90, 160, 3) for f in frames)
    assert abs(int(frames[2][45, 80, 0]) - 80) <= 3
