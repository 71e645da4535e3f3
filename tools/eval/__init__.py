"""Accuracy: the models on held-out data, fusion rules, the sample's labelled segments, the schedule's guard."""
