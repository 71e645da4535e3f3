"""The voice model's tools: room sounds mixed at the SNR they claim, babble only from training actors,
and the temperature that calibrates held-out logits. Synthetic and small: no ../shared needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tools.common.calibration import ece, fit_temperature, softmax
from tools.common.noise import SR, babble, coloured_noise, mix, room_copy, speech_power, tones
from tools.train.voice import FOLDS, LABELS8, SHIPPED_EXCLUDED, babble_pools


def voice_like(rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    """Half a second of silence, then a 150 Hz buzz with a syllable rhythm, then silence again."""
    t = np.arange(int(seconds * SR)) / SR
    buzz = np.sign(np.sin(2 * np.pi * 150 * t)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * 0.1
    return np.concatenate([np.zeros(SR // 2), buzz, np.zeros(SR // 2)]).astype(np.float32)


def test_mix_gives_the_snr_asked_for_against_the_speech_not_the_silence():
    rng = np.random.default_rng(0)
    speech = voice_like(rng)
    noise = coloured_noise(len(speech), 1.0, rng)
    mixed = mix(speech, noise, 10.0)
    added = mixed - speech
    assert 10 * np.log10(speech_power(speech) / np.mean(added.astype(np.float64) ** 2)) == pytest.approx(10.0, abs=0.1)


@pytest.mark.parametrize("exponent, slope_db", [(0.0, 0.0), (1.0, -3.0), (2.0, -6.0)])
def test_coloured_noise_falls_by_3_db_per_octave_per_unit_of_exponent(exponent, slope_db):
    x = coloured_noise(SR * 20, exponent, np.random.default_rng(1))
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    low, high = power[(f >= 500) & (f < 1000)].mean(), power[(f >= 1000) & (f < 2000)].mean()
    # power per Hz: one octave up costs the slope of the noise's colour
    assert 10 * np.log10(high / low) == pytest.approx(slope_db, abs=0.7)


def test_room_copies_keep_length_and_range_and_differ():
    rng = np.random.default_rng(2)
    speech = voice_like(rng)
    pool = [voice_like(rng, 1.5), voice_like(rng, 2.5)]
    copies = [room_copy(speech, pool, rng) for _ in range(6)]
    assert all(c.shape == speech.shape and c.dtype == np.float32 and np.abs(c).max() <= 1.0 for c in copies)
    assert len({round(float(c.std()), 6) for c in copies}) == 6
    assert babble(pool, SR, 4, rng).shape == (SR,) and tones(SR, rng).std() == pytest.approx(1.0, rel=0.01)


def test_babble_comes_only_from_training_actors_of_every_fold():
    speakers = np.repeat(np.arange(1, 25), 3)  # three clips per actor
    pools = babble_pools({"speakers": speakers})
    for actor in range(1, 25):
        voices = set(speakers[pools[actor]].tolist())
        group = next(g for g in FOLDS if actor in g)
        assert actor not in voices and voices <= set(group) and not voices & set(SHIPPED_EXCLUDED)
        assert voices  # every actor has someone to babble behind it


def test_temperature_undoes_overconfidence_and_lowers_the_calibration_error():
    rng = np.random.default_rng(3)
    true_logits = rng.normal(0, 1.5, (4000, 8))
    labels = np.array([rng.choice(8, p=p) for p in softmax(true_logits)])
    overconfident = true_logits * 3.0
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    assert ece(softmax(overconfident, t), labels) < 0.03 < ece(softmax(overconfident), labels)


def test_voice_calibration_fits_on_held_out_folds_and_writes_the_cards(tmp_path):
    """Six folds of over-confident logits: T > 1, the cross-fitted ECE below the raw one, and a card
    that takes the temperature still loads as the daemon loads it."""
    import json
    import shutil

    from edgeemo.core.resources import models_dir
    from edgeemo.voice.classifier import load_voice_card
    from tools.eval import voice_calibration

    rng = np.random.default_rng(5)
    for k in range(6):
        labels = rng.integers(0, 8, 240)
        true = rng.normal(0, 1, (240, 8)) + 2.0 * np.eye(8)[labels]  # right about half the time
        folder = tmp_path / "cv" / f"fold{k}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"test": {"logits": (3 * true).tolist(),
                                                                  "labels": labels.tolist()}}))
    card = tmp_path / "edgeemo-voice-int8.json"
    shipped = json.loads((models_dir() / "edgeemo-voice-int8.json").read_text())
    shutil.copy(models_dir() / "edgeemo-voice-int8.onnx", tmp_path / "edgeemo-voice-int8.onnx")
    out = tmp_path / "calibration.json"
    card.write_text(json.dumps(shipped | {"context_s": 0.5}))
    with pytest.raises(SystemExit, match="calibrated on speech read with context_s"):  # a whole-clip T would not fit
        voice_calibration.main([str(tmp_path / "cv"), "--card", str(card)])
    card.write_text(json.dumps({k: v for k, v in shipped.items() if k != "context_s"}))
    assert voice_calibration.main([str(tmp_path / "cv"), "--card", str(card), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["temperature"] > 1.3  # logits three times too sharp: spread out again
    assert result["cross_fitted"]["ece8"] < result["raw"]["ece8"] / 2
    assert len(result["cross_fitted_temperatures"]) == 6 and out.with_suffix(".png").stat().st_size > 0
    assert result["kept"]
    loaded = load_voice_card(card)
    assert float(np.ravel(loaded.temperature)[0]) == pytest.approx(result["temperature"])
    metrics = json.loads(card.read_text())["metrics"]
    assert metrics["ravdess_cv_ece8_calibrated"] == result["cross_fitted"]["ece8"] and metrics["ravdess_cv_temperature_kept"]

    for k in range(6):  # now logits already calibrated: a fitted T only fits noise and is not kept
        path = tmp_path / "cv" / f"fold{k}" / "result.json"
        test = json.loads(path.read_text())["test"]
        test["logits"] = (np.array(test["logits"]) / result["cross_fitted_temperatures"][k]).tolist()
        path.write_text(json.dumps({"test": test}))
    voice_calibration.main([str(tmp_path / "cv"), "--card", str(card), "--json", str(out)])
    again = json.loads(out.read_text())
    assert not again["kept"] and again["temperature"] == pytest.approx(1.0, abs=0.05)
    assert "temperature" not in json.loads(card.read_text())
    assert json.loads(card.read_text())["metrics"]["ravdess_cv_temperature_kept"] is False
    assert float(np.ravel(load_voice_card(card).temperature)[0]) == 1.0


def test_voice_calibration_names_a_missing_fold(tmp_path):
    from tools.eval import voice_calibration

    with pytest.raises(SystemExit, match="fold0/result.json: missing"):
        voice_calibration.main([str(tmp_path)])


def test_vad_cut_training_sees_the_speech_as_detect_cuts_it_unpadded():
    """--vad-cut: every copy of a clip cut to its speech (the buzz between 0.5 s and 2.5 s, padded by
    the VAD's 0.1 s), and crops no longer than the batch's shortest speech, so nothing is padded."""
    import torch

    from edgeemo.voice.features import AudioFrontEnd
    from tools.train.voice import speech_cut, training_batch

    rng = np.random.default_rng(3)
    clips = [voice_like(rng, 2.0) + (1e-4 * rng.standard_normal(3 * SR)).astype(np.float32),
             voice_like(rng, 1.0) + (1e-4 * rng.standard_normal(2 * SR)).astype(np.float32)]
    front = AudioFrontEnd()
    data = {"audio": np.concatenate([(c * 32767).astype(np.int16) for c in clips]),
            "offsets": np.cumsum([0, *map(len, clips)])}
    loud = [np.clip(c + 0.05 * rng.standard_normal(len(c)).astype(np.float32), -1, 1) for c in clips]
    feats = [[torch.from_numpy(front.raw_features(c)) for c in copy] for copy in (clips, loud)]  # clean, noisy
    cut = speech_cut(data, front, feats)
    assert [len(f) * front.hop_s for f in cut[0]] == pytest.approx([2.2, 1.2], abs=0.1)
    assert [len(f) for f in cut[1]] == [len(f) for f in cut[0]]  # the noisy copy cut where the clean one is
    assert not torch.equal(cut[0][0], cut[1][0])
    batch = training_batch(cut, np.array([0, 1]), 299, torch.Generator().manual_seed(0), front, 0.5,
                           fit_shortest=True)
    assert batch.shape[1] <= len(cut[0][1]) / 1.1 and batch.shape[2] == front.n_filters


def tiny_ravdess(root, rng: np.random.Generator) -> None:
    """A RAVDESS-shaped npz (two buzzing clips per actor, silence around them) under ``root``."""
    clips = [voice_like(rng, 1.0 + 0.1 * (k % 3)) for k in range(48)]
    clips = [c + (1e-4 * rng.standard_normal(len(c))).astype(np.float32) for c in clips]
    (root / "ravdess").mkdir(parents=True)
    np.savez(root / "ravdess" / "ravdess.npz", audio=np.concatenate([(c * 32767).astype(np.int16) for c in clips]),
             offsets=np.cumsum([0, *map(len, clips)]), labels=np.arange(48) % 8,
             speakers=np.repeat(np.arange(1, 25), 2), label_names=np.array(LABELS8), sr=SR)


@pytest.mark.parametrize("p_cut", [0.0, 0.5])
def test_p_cut_mixes_speech_cut_batches_with_whole_clip_crops(tmp_path, monkeypatch, p_cut):
    """--p-cut: about that share of the batches is cut to the speech (shorter than the 3 s crops), the
    rest whole-clip crops; the test clips are still read whole, their cut speech reported beside."""
    import json

    from tools.train import voice

    tiny_ravdess(tmp_path / "data", np.random.default_rng(4))
    lengths: list[int] = []  # frames of each training batch
    real_batch = voice.training_batch

    def batch_seen(*args, **kwargs):
        batch = real_batch(*args, **kwargs)
        lengths.append(batch.shape[1])
        return batch

    monkeypatch.setattr(voice, "training_batch", batch_seen)
    voice.main(["--fold", "0", "--epochs", "4", "--batch", "4", "--noise-copies", "1", "--p-cut", str(p_cut),
                "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")])
    whole = voice.AudioFrontEnd().frames(3 * SR)
    cut = sum(n < whole for n in lengths)
    assert len(lengths) == 40  # 4 epochs of 10 batches (40 training clips, 4 a batch)
    result = json.loads((tmp_path / "run" / "fold0" / "result.json").read_text())
    assert len(result["test"]["labels"]) == 8
    if p_cut:
        assert 10 <= cut <= 30 and "test_cut_speech" in result
    else:
        assert cut == 0 and "test_cut_speech" not in result


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two short runs of tools.train.voice (six CV folds and 'all', other seeds) on a tiny RAVDESS."""
    from tools.train import voice

    root = tmp_path_factory.mktemp("voice-runs")
    tiny_ravdess(root / "data", np.random.default_rng(5))
    for seed in (0, 1):
        for which in (["--folds", "0-5"], ["--fold", "all"]):
            voice.main([*which, "--epochs", "2", "--batch", "4", "--noise-copies", "1", "--eval-every", "2",
                        "--seed", str(seed), "--data", str(root / "data"), "--out", str(root / f"run{seed}")])
    return root


def test_voice_context_is_chosen_on_the_folds_and_reaches_the_cards_of_that_cv_only(tiny_runs, tmp_path):
    """tools.eval.voice_context reads every fold's held-out clips as detect does at each context, picks
    the best 8-class reading (the smaller on a tie), fits the temperature on the speech segments; the
    export takes both into the cards only for the CV folder they were measured on."""
    import json

    from tools.eval import voice_context
    from tools.export.voice import speech_context

    cv, out = tiny_runs / "run0", tmp_path / "context.json"
    assert voice_context.main([str(cv), "--json", str(out), "--data", str(tiny_runs / "data")]) == 0
    result = json.loads(out.read_text())
    accuracy = {float(c): s["acc8"] for c, s in result["contexts"].items()}
    assert sorted(accuracy) == list(voice_context.CONTEXTS_S) and result["clips"] == 48
    best = max(accuracy.values())
    assert result["chosen_s"] == min(c for c, a in accuracy.items() if a == best)
    assert result["calibration"]["utterances"] >= 40  # a reading per speech segment, nearly a segment a clip
    assert out.with_suffix(".png").stat().st_size > 0

    keys = speech_context(out, cv)
    assert keys["context_s"] == result["chosen_s"] and keys["temperature"] == result["calibration"]["temperature"]
    assert keys["ece8_calibrated"] == result["calibration"]["cross_fitted"]["ece8"]
    assert speech_context(out, tiny_runs / "run1") == {} and speech_context(tmp_path / "none.json", cv) == {}
    with pytest.raises(SystemExit, match="measured on .*run0, not"):  # asked for by name: an error, not a shrug
        speech_context(out, tiny_runs / "run1", strict=True)
    retrained = json.loads(out.read_text())
    retrained["folds_acc8"][0] += 0.01  # the folds' models are not those it read any more
    out.write_text(json.dumps(retrained))
    assert speech_context(out, cv) == {}
    with pytest.raises(SystemExit, match="other models"):
        speech_context(out, cv, strict=True)
    out.write_text("{}")
    with pytest.raises(SystemExit, match="not a tools.eval.voice_context result"):
        speech_context(out, cv, strict=True)


def test_an_ensemble_averages_its_members_logits_in_one_net_and_in_every_fold(tiny_runs, tmp_path):
    import json

    import torch

    from tools.train import voice_ensemble
    from tools.train.voice import build_model, metrics

    runs = [tiny_runs / "run0", tiny_runs / "run1"]
    assert voice_ensemble.main([*map(str, runs), "--out", str(tmp_path / "ens")]) == 0
    x = torch.randn(3, 120, 40)
    for fold in voice_ensemble.FOLD_DIRS:
        ckpt = torch.load(tmp_path / "ens" / fold / "final.pt", weights_only=False)
        joined = build_model(ckpt["config"]).eval()
        joined.load_state_dict(ckpt["model"])
        members = []
        for run in runs:
            member = torch.load(run / fold / "final.pt", weights_only=False)
            net = build_model(member["config"]).eval()
            net.load_state_dict(member["model"])
            members.append(net)
        with torch.no_grad():
            assert torch.allclose(joined(x), (members[0](x) + members[1](x)) / 2, atol=1e-5)
        tested = [json.loads((r / fold / "result.json").read_text())["test"] for r in [*runs, tmp_path / "ens"]]
        mean = (np.array(tested[0]["logits"]) + np.array(tested[1]["logits"])) / 2
        assert np.allclose(tested[2]["logits"], mean, atol=1e-3)
        assert tested[2]["acc8"] == metrics(mean, np.array(tested[2]["labels"]))["acc8"]
    report = json.loads((tmp_path / "ens" / "cv_report.json").read_text())
    assert len(report["folds"]) == 6 and "tools.train.voice_ensemble" in report["command"]
    with pytest.raises(SystemExit, match="missing"):
        voice_ensemble.main([str(runs[0]), str(tmp_path / "nothing"), "--out", str(tmp_path / "bad")])


def test_the_cards_rooms_table_names_every_model_and_counts_only_what_the_result_file_has(tmp_path):
    """tools.export.voice's rooms table: one, two or three models in a tools.eval.voice result, with
    the counts right where the file has them (older result files do not)."""
    from tools.common.datasets import REPO
    from tools.export.voice import epochs_text, rooms_section

    def model(acc7: float, correct: int | None) -> dict:
        score = {"acc7": acc7, "files": 120} | ({} if correct is None else {"correct": correct})
        return {kind: score for kind in ("clean", "pink10", "babble10")} | {"window_cost": {"median_ms": 1.9,
                                                                                            "min_ms": 1.8}}

    rooms = tmp_path / "rooms.json"
    for models, together in (({"a": model(0.5, 60)}, "The model in one run"),
                             ({"a": model(0.5, 60), "b": model(0.7, None)}, "Both models in one run"),
                             ({"a": model(0.5, 60), "b": model(0.7, None), "c": model(0.6, 72)}, "All 3 models")):
        rooms.write_text(json.dumps({"models": models, "command": "python -m tools.eval.voice",
                                     "acceptance": {"clean": 0.67, "pink10": 0.6, "babble10": 0.55}}))
        with pytest.MonkeyPatch.context() as patch:  # the section names its file relative to the repository
            patch.setattr("tools.export.voice.REPO", tmp_path)
            text = "\n".join(rooms_section(rooms, REPO / "no-such-file.json"))
        assert together in text
        assert "| a | 50.0 % (60) | 50.0 % (60) | 50.0 % (60) | 1.90 / 1.80 |" in text
        if "b" in models:
            assert "| b | 70.0 % | 70.0 % | 70.0 % |" in text
            assert "| b: met? | met | met | met | met |" in text
        assert "| a: met? | **NOT met** | **NOT met** | **NOT met** | met |" in text
    assert epochs_text("200") == "200 epochs"
    assert epochs_text("200+200+200") == "3 nets of 200 epochs each"
    assert epochs_text("120+200") == "a net of 120 epochs + a net of 200 epochs"
