"""Detection, face alignment and classification on real frames of the bundled sample."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeemo import LABELS
from edgeemo.vision.classifier import ExpressionClassifier, align_matrix, crop_faces
from edgeemo.config.schema import ClassifierConfig, Config, DetectorConfig
from edgeemo.vision.detector import FaceDetector
from edgeemo.core.modelcard import load_card
from edgeemo.vision.analysis import model_paths
from edgeemo.core.resources import models_dir, sample_video
from edgeemo.core.inference import InferenceModel, ModelError

FIXTURES = Path(__file__).parent / "fixtures"
YUNET = models_dir() / "yunet_s_dynamic.onnx"


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(DetectorConfig(), YUNET)


@pytest.fixture(scope="module")
def card():
    return load_card(model_paths(Config())[1])


def sample_frames(step: int = 7) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(sample_video()))
    frames, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        if index % step == 0:
            frames.append(frame)
        index += 1


def test_exactly_one_face_in_every_sampled_frame(detector):
    frames = sample_frames()
    counts = [len(detector.detect(frame)) for frame in frames]
    assert len(frames) == 61 and set(counts) == {1}


def test_decoding_matches_opencv_reference(detector):
    frame = cv2.imread(str(FIXTURES / "two_faces.jpg"))
    ours = detector.detect(frame)
    assert len(ours) == 2
    # OpenCV's own YuNet decoder on the same downscaled, padded input.
    scale = 320 / frame.shape[1]
    small = cv2.resize(frame, (320, round(frame.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    small = cv2.copyMakeBorder(small, 0, (-small.shape[0]) % 32, 0, 0, cv2.BORDER_CONSTANT)
    reference = cv2.FaceDetectorYN.create(str(YUNET), "", (small.shape[1], small.shape[0]), 0.75, 0.3, 16)
    _, rows = reference.detect(small)
    rows = rows[np.argsort(rows[:, 0])] / scale
    order = np.argsort(ours.boxes[:, 0])
    np.testing.assert_allclose(ours.boxes[order], rows[:, :4], atol=0.5)
    np.testing.assert_allclose(ours.landmarks[order].reshape(-1, 10), rows[:, 4:14], atol=0.5)


def test_no_face_in_a_blank_image_and_min_size_filter(detector):
    assert len(detector.detect(cv2.imread(str(FIXTURES / "no_face.png")))) == 0
    big_only = FaceDetector(DetectorConfig(min_face_px=400), YUNET)
    assert len(big_only.detect(cv2.imread(str(FIXTURES / "angry_actor01.jpg")))) == 0


def test_alignment_puts_the_eyes_where_the_card_says(card):
    landmarks = np.array([[100, 120], [160, 110], [130, 150], [110, 180], [150, 175]], np.float32)
    matrix = align_matrix(landmarks, card)
    eyes = cv2.transform(landmarks[None, :2], matrix)[0]
    h, w = card.size
    np.testing.assert_allclose(eyes.mean(0), np.multiply(card.crop.eye_center, (w, h)), atol=1e-3)
    assert np.linalg.norm(eyes[1] - eyes[0]) == pytest.approx(card.crop.eye_distance * w, rel=1e-4)
    assert eyes[0, 1] == pytest.approx(eyes[1, 1], abs=1e-3)  # levelled


def test_crops_match_the_frame_converted_first(detector, card):
    frame = cv2.imread(str(FIXTURES / "two_faces.jpg"))
    faces = detector.detect(frame)
    from edgeemo.core.modelcard import colour_of
    converted_first = np.stack([cv2.warpAffine(colour_of(card, frame), align_matrix(lm, card), card.size[::-1],
                                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                                for lm in faces.landmarks])
    assert np.abs(crop_faces(frame, faces, card).astype(int) - converted_first).max() <= 1


def test_classifier_gives_distributions_for_every_face(detector, card):
    frame = cv2.imread(str(FIXTURES / "two_faces.jpg"))
    faces = detector.detect(frame)
    crops = crop_faces(frame, faces, card)
    assert crops.shape == (2, *card.size) + ((3,) if card.channels == 3 else ())
    classifier = ExpressionClassifier(ClassifierConfig(flip_margin=1.0), card)
    probs = classifier.classify(frame, faces)
    assert probs.shape == (2, len(LABELS))
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    # Flip averaging of every face: a mirrored face gets the same answer.
    mirrored = classifier.classify_crops(crops[:, :, ::-1].copy())
    np.testing.assert_allclose(mirrored, classifier.classify_crops(crops), atol=1e-5)


def test_mirror_pass_only_for_unsure_faces(card):
    """Real sample faces through the shipped model: sure answers keep one pass, unsure ones are averaged."""
    from edgeemo.vision.classifier import top_two_margin

    detector = FaceDetector(DetectorConfig(), YUNET)
    crops = np.concatenate([crop_faces(frame, faces, card) for frame in sample_frames(3)
                            if len(faces := detector.detect(frame))])
    one_pass = ExpressionClassifier(ClassifierConfig(flip_margin=0.0), card).classify_crops(crops)
    every = ExpressionClassifier(ClassifierConfig(flip_margin=1.0), card).classify_crops(crops)
    margins = top_two_margin(one_pass)
    threshold = float(np.median(margins))  # half the faces each way, whatever the model
    selective = ExpressionClassifier(ClassifierConfig(flip_margin=threshold), card).classify_crops(crops)
    unsure = margins <= threshold
    assert 0 < unsure.sum() < len(crops)
    np.testing.assert_allclose(selective[~unsure], one_pass[~unsure], atol=1e-6)
    np.testing.assert_allclose(selective[unsure], every[unsure], atol=1e-6)
    assert not np.allclose(every[unsure], one_pass[unsure], atol=1e-3)  # the mirror pass did change them
    # No setting in the config: the card's margin.
    assert ExpressionClassifier(ClassifierConfig(), card).flip_margin == card.flip_margin


def test_corrupt_and_missing_model_files_give_clear_errors(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(YUNET.read_bytes()[:5000])
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(ModelError, match="cannot load model .*broken.onnx"):
            InferenceModel(broken, backend)
    with pytest.raises(ModelError, match="not found"):
        InferenceModel(tmp_path / "missing.onnx")


def test_openvino_backend_finds_the_same_faces():
    frame = cv2.imread(str(FIXTURES / "two_faces.jpg"))
    ort_faces = FaceDetector(DetectorConfig(), YUNET).detect(frame)
    ov_faces = FaceDetector(DetectorConfig(backend="openvino"), YUNET).detect(frame)
    order_a, order_b = np.argsort(ort_faces.boxes[:, 0]), np.argsort(ov_faces.boxes[:, 0])
    np.testing.assert_allclose(ort_faces.boxes[order_a], ov_faces.boxes[order_b], atol=1.5)


@pytest.mark.parametrize("label, shape, box", [
    ("happy 87%", (48, 48), (0, 0, 48, 48)), ("surprise 100%", (48, 48), (2, 2, 44, 44)),
    ("surprise 100%", (360, 640), (600, 2, 40, 40)), ("happy 87%", (360, 640), (10, 100, 60, 60))])
def test_a_label_is_placed_where_it_fits_whole(label, shape, box):
    """A 48x48 face filling its image ("happ" was all that showed), a face at the top right corner:
    the label stays inside the image, whole words only."""
    from edgeemo.vision.annotate import FONT, label_place

    text, (x, y), scale = label_place(label, box, shape)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    assert 0 <= x and x + tw <= shape[1] and 0 <= y - th and y + base <= shape[0]
    assert label.startswith(text) and text.split(" ")[0] == label.split(" ")[0] and scale >= 0.25
    if shape[1] > 100:
        assert (text, scale) == (label, 0.5)  # room enough: the whole label at full size
