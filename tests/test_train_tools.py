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
    teacher_logits = torch.randn(2, 6, 7) * 3  # two teachers, six faces
    target = train_face.teacher_probs(teacher_logits, temp=3.0)
    assert torch.allclose(target.sum(1), torch.ones(6))
    # The student that matches the mean softened probabilities (its log) has nothing left to learn.
    matching = target.log() * 3.0
    assert train_face.distil_loss(matching, target, temp=3.0).item() == pytest.approx(0.0, abs=1e-5)
    assert train_face.distil_loss(teacher_logits[0], target, temp=3.0).item() > 0.01


def test_soft_targets_are_mirror_invariant_and_load_for_training(tmp_path: Path) -> None:
    from tools.train import soft_targets
    torch.manual_seed(0)
    model = EdgeNet(width=4).eval()
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    logits = soft_targets.flip_logits(model, faces, batch=2)
    assert logits.shape == (5, 7)
    np.testing.assert_allclose(soft_targets.flip_logits(model, faces[:, :, ::-1].copy()), logits, atol=1e-5)
    path = tmp_path / "targets.npz"
    np.savez(path, logits=np.stack([logits, -logits]), teachers=np.array(["a/best.pt", "b/best.pt"]))
    probs = train_face.load_targets(path, temp=2.0, n_train=5, device="cpu")
    assert probs.shape == (5, 7) and torch.allclose(probs.sum(1), torch.ones(5))
    with pytest.raises(SystemExit, match="targets for 5 faces, but Training has 6"):
        train_face.load_targets(path, temp=2.0, n_train=6, device="cpu")
    cmd = export_face.training_command({"arch": "edge", "targets": str(path), "kd_alpha": 0.5})
    assert cmd == (f"python -m tools.train.soft_targets a/best.pt b/best.pt --out {path} && "
                   f"python -m tools.train.face --arch edge --targets {path} --kd-alpha 0.5")


def test_augment_keeps_shape_and_varies_with_the_generator() -> None:
    faces = torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8)
    a = train_face.augment(faces, torch.Generator().manual_seed(1))
    b = train_face.augment(faces, torch.Generator().manual_seed(2))
    assert a.shape == (4, 1, 48, 48) and a.dtype == torch.float32
    assert not torch.equal(a, b)
    assert torch.equal(a, train_face.augment(faces, torch.Generator().manual_seed(1)))


def test_budget_fits_epochs_to_the_time_left() -> None:
    assert train_face.fit_epochs(300, left_s=100.0, epoch_s=2.0) == 52   # two done + 50 that fit
    assert train_face.fit_epochs(30, left_s=100.0, epoch_s=2.0) == 30    # never more than asked
    assert train_face.fit_epochs(300, left_s=-5.0, epoch_s=2.0) == 2     # over budget: stop


def test_training_command_lists_teachers_and_drops_the_budget() -> None:
    cmd = export_face.training_command({"arch": "edge", "data": "/x", "epochs": 118, "budget_s": 230.0,
                                        "teacher": ["runs/vgg/best.pt", "runs/resnet/best.pt"], "init": None})
    assert cmd == ("python -m tools.train.face --arch edge --epochs 118 "
                   "--teacher runs/vgg/best.pt runs/resnet/best.pt")
    assert "--teacher" not in export_face.training_command({"arch": "edge", "teacher": []})


def test_data_survives_the_trip_without_privatetest(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300  # not a multiple of the mosaic's row: the padding must be cut off again
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    usage = rng.integers(0, 3, n).astype(np.uint8)
    labels = rng.integers(0, 7, n).astype(np.uint8)
    (tmp_path / "data" / "fer2013").mkdir(parents=True)
    np.savez(tmp_path / "data" / "fer2013" / "fer2013.npz", images=images, labels=labels, usage=usage)

    carry.pack_data(str(tmp_path / "data"), tmp_path / "carry")
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
