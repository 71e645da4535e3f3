"""tools/eval/sample.py: per-segment scoring of daemon events against labelled segments."""

from tools.eval import sample as eval_sample

from edgeemo import LABELS


def event(pts: float, label: str, kind: str = "update") -> dict:
    probs = {k: 0.5 if k == label else 0.5 / 6 for k in LABELS}
    return {"pts": pts, "type": kind, "probs": probs}


def test_segments_take_the_mean_of_their_events_and_map_ravdess_names():
    segments = [{"segment": "0", "start_s": "0", "end_s": "2", "emotion": "neutral"},
                {"segment": "1", "start_s": "2", "end_s": "4", "emotion": "fearful"},
                {"segment": "2", "start_s": "4", "end_s": "6", "emotion": "angry"}]
    events = [event(0.1, "neutral", "start"), event(1.0, "happy"), event(1.5, "neutral"),
              event(2.5, "fear"), event(3.9, "fear", "end"), event(5.0, "happy", "end")]
    rows = eval_sample.segment_results(events, segments)
    assert [(r["label"], r["predicted"], r["correct"], r["events"]) for r in rows] == [
        ("neutral", "neutral", True, 3), ("fear", "fear", True, 1), ("angry", None, False, 0)]
