"""Home Assistant MQTT discovery (CONVENTIONS.md): one retained device config with two sensors."""

from __future__ import annotations

from edgeemo import LABELS, __version__


def discovery_payload(device: str, topics: dict[str, str]) -> dict:
    """Home Assistant device-based discovery: one device with two sensors read from the state topic.

    "Emotion" is the first face in view (an enum sensor, so HA offers the labels in automations),
    "Faces" how many are in view; both go unavailable with the availability topic.
    """
    return {
        "device": {"identifiers": [f"edgeemo_{device}"], "name": f"edgeemo {device}",
                   "manufacturer": "edgeemo", "model": "edgeemo", "sw_version": __version__},
        "origin": {"name": "edgeemo", "sw_version": __version__},
        "availability_topic": topics["availability"],
        "state_topic": topics["state"],
        "qos": 1,
        "components": {
            f"{device}_emotion": {
                "platform": "sensor", "name": "Emotion", "unique_id": f"edgeemo_{device}_emotion",
                "device_class": "enum", "options": [*LABELS, "none"], "icon": "mdi:emoticon-outline",
                "value_template": "{{ value_json.faces[0].emotion if value_json.faces else 'none' }}",
            },
            f"{device}_faces": {
                "platform": "sensor", "name": "Faces", "unique_id": f"edgeemo_{device}_faces",
                "state_class": "measurement", "icon": "mdi:account-group",
                "value_template": "{{ value_json.faces | length }}",
            },
        },
    }
