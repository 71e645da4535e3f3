"""The training side of the model tools: distillation loss, time budget, training command, and the
data / run packing that carries them to a GPU lease and back. Tiny, synthetic, CPU only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


from tools.lease import carry
from tools.export import face as export_face
from tools.train import face as train_face
from tools.train.face_nets import EdgeNet

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def test_distillation_loss_is_zero_only_when_student_matches_the_teachers() -> None:
    torch.manual_seed(0)
    target = (torch.randn(6, 7) * 3).softmax(1)  # the teachers' mean softened probabilities, six faces
    # The student that matches them (its log, scaled back by the temperature) has nothing left to learn.
    matching = target.log() * 3.0
    assert train_face.distil_loss(matching, target, temp=3.0).item() == pytest.approx(0.0, abs=1e-5)
    assert train_face.distil_loss(torch.randn(6, 7), target, temp=3.0).item() > 0.01


def teachers_file(path: Path, rows: int = 5) -> np.ndarray:
    """A teachers file shaped like ../shared/data/teachers' (6 FER-2013 and 2 FER+ nets, two views)."""
    rng = np.random.default_rng(0)
    index = np.arange(rows, dtype=np.int32) + 10
    np.savez(path, fer2013_index=index, fer_logits=rng.normal(0, 3, (rows, 6, 2, 7)).astype(np.float16),
             ferplus_logits=rng.normal(0, 3, (rows, 2, 2, 8)).astype(np.float16))
    return index


def test_teacher_targets_mix_ferplus_into_our_labels_and_keep_both_views(tmp_path: Path) -> None:
    from tools.train import teachers
    index = teachers_file(tmp_path / "t.npz")
    fer_only = teachers.load_targets(tmp_path / "t.npz", index[[3, 1]], temp=2.0, ferplus_weight=0.0)
    assert fer_only.shape == (2, 2, 7)
    np.testing.assert_allclose(fer_only.sum(-1), 1.0, atol=1e-5)
    with np.load(tmp_path / "t.npz") as npz:  # row order follows the rows asked for, views stay apart
        expected = teachers.softmax(npz["fer_logits"][3], 2.0).mean(0)
        ferplus = teachers.softmax(npz["ferplus_logits"][3], 2.0)
    np.testing.assert_allclose(fer_only[0], expected, atol=1e-5)
    # FER+ happiness (column 1) is our happy (3); contempt (7) is dropped and the rest renormalised.
    plus = teachers.load_targets(tmp_path / "t.npz", index[[3]], temp=2.0, ferplus_weight=1.0)[0]
    np.testing.assert_allclose(plus[:, 3], (ferplus[:, :, 1] / ferplus[:, :, :7].sum(-1)).mean(0), atol=1e-5)
    with pytest.raises(SystemExit, match="no teacher outputs for 1 of the faces"):
        teachers.load_targets(tmp_path / "t.npz", np.array([0]), temp=2.0, ferplus_weight=0.0)


def test_compact_targets_carry_the_same_mix(tmp_path: Path) -> None:
    from tools.train import teachers
    index = teachers_file(tmp_path / "t.npz")
    teachers.compact_targets(tmp_path / "t.npz", tmp_path / "c.npz", index, temp=4.0)
    full = teachers.load_targets(tmp_path / "t.npz", index, temp=4.0, ferplus_weight=0.3)
    np.testing.assert_allclose(teachers.load_targets(tmp_path / "c.npz", index, 4.0, 0.3), full, atol=2e-3)
    with pytest.raises(SystemExit, match="softened at T=4.0, but --kd-temp is 3.0"):
        teachers.load_targets(tmp_path / "c.npz", index, 3.0, 0.3)


def test_augment_keeps_shape_and_varies_with_the_generator() -> None:
    faces = torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8)
    (a, flipped), (b, _) = (train_face.augment(faces, torch.Generator().manual_seed(s)) for s in (1, 2))
    assert a.shape == (4, 1, 48, 48) and a.dtype == torch.float32
    assert flipped.shape == (4,) and flipped.dtype == torch.bool
    assert not torch.equal(a, b)
    assert torch.equal(a, train_face.augment(faces, torch.Generator().manual_seed(1))[0])


def test_budget_fits_epochs_to_the_time_left() -> None:
    assert train_face.fit_epochs(300, left_s=100.0, epoch_s=2.0) == 52   # two done + 50 that fit
    assert train_face.fit_epochs(30, left_s=100.0, epoch_s=2.0) == 30    # never more than asked
    assert train_face.fit_epochs(300, left_s=-5.0, epoch_s=2.0) == 2     # over budget: stop


def test_training_command_names_the_teachers_and_drops_the_budget() -> None:
    cmd = export_face.training_command({"arch": "edge", "data": "/x", "epochs": 118, "budget_s": 230.0, "init": None,
                                        "targets": "/tmp/d/teachers/fer2013_teachers.npz", "kd_temp": 4.0,
                                        "ferplus_weight": 0.1})
    assert cmd == "python -m tools.train.face --arch edge --epochs 118 --targets --kd-temp 4.0 --ferplus-weight 0.1"
    assert "--kd" not in export_face.training_command({"arch": "edge", "kd_temp": 4.0, "ferplus_weight": 0.1})


def test_data_survives_the_trip_without_privatetest(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300  # not a multiple of the mosaic's row: the padding must be cut off again
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    usage = rng.integers(0, 3, n).astype(np.uint8)
    labels = rng.integers(0, 7, n).astype(np.uint8)
    (tmp_path / "data" / "fer2013").mkdir(parents=True)
    np.savez(tmp_path / "data" / "fer2013" / "fer2013.npz", images=images, labels=labels, usage=usage)

    carry.pack_data(str(tmp_path / "data"), tmp_path / "carry", temp=4.0, with_public=True)
    carry.unpack_data(tmp_path / "carry", tmp_path / "there")
    back = np.load(tmp_path / "there" / "fer2013" / "fer2013.npz")
    keep = usage != 2
    assert np.array_equal(back["images"], images[keep])
    assert np.array_equal(back["labels"], labels[keep]) and np.array_equal(back["usage"], usage[keep])


def test_runs_come_back_with_weights_and_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(carry, "CHUNK_BYTES", 50_000)    # force several chunks
    monkeypatch.setattr(carry, "HALF_ABOVE", 10_000)     # and the fp16 path
    model = EdgeNet(width=4)
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    state = {"arch": "edge", "labels": [], "mean": 0.5, "std": 0.25, "size": 48, "args": {}, "epoch": 2,
             "val": {"val_acc": 0.5}}
    history = [{"epoch": e, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0,
                "val_acc": 0.5, "val_acc_flip": 0.5, "seconds": 1.0} for e in (1, 2, 3)]
    torch.save({**state, "model": model.state_dict()}, run / "best.pt")
    torch.save({**state, "model": model.state_dict(), "history": history}, run / "last.pt")

    carry.pack_runs(tmp_path / "runs", tmp_path / "out")
    assert len(list((tmp_path / "out").glob("runs.tar.*"))) > 1
    carry.unpack_runs(tmp_path / "out", tmp_path / "back")
    back = torch.load(tmp_path / "back" / "tiny" / "best.pt", weights_only=True)
    for key, tensor in model.state_dict().items():
        assert back["model"][key].dtype == tensor.dtype
        assert torch.allclose(back["model"][key].float(), tensor.float(), atol=1e-2, rtol=1e-3)
    assert (tmp_path / "back" / "tiny" / "history.csv").read_text().count("\n") == 4


def test_training_command_follows_init_back_to_the_first_run(tmp_path: Path) -> None:
    first = tmp_path / "first.pt"
    torch.save({"args": {"arch": "edge", "epochs": 118, "out": "runs/a"}}, first)
    cmd = export_face.training_command({"arch": "edge", "epochs": 10, "init": str(first), "kd_alpha": 0.7})
    assert cmd == (f"python -m tools.train.face --arch edge --epochs 118 --out runs/a && "
                   f"python -m tools.train.face --arch edge --epochs 10 --init {first}")


def test_training_faces_travel_alone_with_their_teachers_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    usage = np.array([0, 1, 0, 2, 0, 1], np.uint8)
    images = rng.integers(0, 256, (len(usage), 48, 48), dtype=np.uint8)
    (tmp_path / "data" / "fer2013").mkdir(parents=True)
    (tmp_path / "data" / "teachers").mkdir()
    np.savez(tmp_path / "data" / "fer2013" / "fer2013.npz", images=images, labels=usage, usage=usage)
    np.savez(tmp_path / "data" / "teachers" / "fer2013_teachers.npz", fer2013_index=np.array([0, 1, 2, 4, 5]),
             fer_logits=rng.normal(0, 3, (5, 6, 2, 7)), ferplus_logits=rng.normal(0, 3, (5, 2, 2, 8)))

    carry.pack_data(str(tmp_path / "data"), tmp_path / "carry", temp=4.0, with_public=False)
    carry.unpack_data(tmp_path / "carry", tmp_path / "there")
    back = np.load(tmp_path / "there" / "fer2013" / "fer2013.npz")
    assert np.array_equal(back["images"], images[usage == 0]) and set(back["usage"]) == {0}
    # The targets train/face loads for the carried faces are those of the same faces at home.
    there = train_face.load_targets(tmp_path / "there" / "teachers" / "fer2013_teachers.npz", tmp_path / "there",
                                    temp=4.0, ferplus_weight=0.1, device="cpu")
    home = train_face.load_targets(tmp_path / "data" / "teachers" / "fer2013_teachers.npz", tmp_path / "data",
                                   temp=4.0, ferplus_weight=0.1, device="cpu")
    assert there.shape == (3, 2, 7)
    torch.testing.assert_close(there, home, atol=2e-3, rtol=0)
