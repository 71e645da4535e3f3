"""Home Assistant MQTT discovery (CONVENTIONS.md): one retained device config, every sensor read from
the retained state topic (sinks.mqtt.state builds it)."""

from __future__ import annotations

from edgeemo import LABELS, __version__

EMOTION_OPTIONS = [*LABELS, "none"]


def discovery_payload(device: str, topics: dict[str, str], sources: list[str]) -> dict:
    """Home Assistant device-based discovery: one device, its sensors in `components`.

    "Emotion" is the first face in view and "Faces" how many; per source the voice and fused emotion
    (enum sensors, so HA offers the labels in automations; `none` while nobody speaks) and their
    confidence in %; per emotion the share of the faces in view showing it, in %. All go unavailable
    with the availability topic.
    """
    components = {
        f"{device}_emotion": enum_sensor(device, "emotion", "Emotion", "mdi:emoticon-outline",
                                         "{{ value_json.faces[0].emotion if value_json.faces else 'none' }}"),
        f"{device}_faces": {
            "platform": "sensor", "name": "Faces", "unique_id": f"edgeemo_{device}_faces",
            "state_class": "measurement", "icon": "mdi:account-group",
            "value_template": "{{ value_json.faces | length }}",
        },
    }
    for source in sources:
        for stream, icon in (("voice", "mdi:account-voice"), ("fused", "mdi:emoticon-plus-outline")):
            reading = f"(value_json.sources | default({{}}))['{source}'] | default({{}})"
            key = f"{source}_{stream}"
            components[f"{device}_{key}_emotion"] = enum_sensor(
                device, f"{key}_emotion", f"{source} {stream} emotion", icon,
                f"{{% set r = ({reading})['{stream}'] | default(none) %}}{{{{ r.emotion if r else 'none' }}}}")
            components[f"{device}_{key}_confidence"] = percent_sensor(
                device, f"{key}_confidence", f"{source} {stream} confidence", icon,
                f"{{% set r = ({reading})['{stream}'] | default(none) %}}"
                "{{ (r.confidence * 100) | round(1) if r else none }}")
    for label in LABELS:
        components[f"{device}_share_{label}"] = percent_sensor(
            device, f"share_{label}", f"Share {label}", "mdi:chart-donut",
            f"{{{{ ((value_json.share | default({{}}))['{label}'] | default(0) * 100) | round(1) }}}}")
    return {
        "device": {"identifiers": [f"edgeemo_{device}"], "name": f"edgeemo {device}",
                   "manufacturer": "edgeemo", "model": "edgeemo", "sw_version": __version__},
        "origin": {"name": "edgeemo", "sw_version": __version__},
        "availability_topic": topics["availability"],
        "state_topic": topics["state"],
        "qos": 1,
        "components": components,
    }


def enum_sensor(device: str, key: str, name: str, icon: str, template: str) -> dict:
    return {"platform": "sensor", "name": name, "unique_id": f"edgeemo_{device}_{key}", "device_class": "enum",
            "options": EMOTION_OPTIONS, "icon": icon, "value_template": template}


def percent_sensor(device: str, key: str, name: str, icon: str, template: str) -> dict:
    return {"platform": "sensor", "name": name, "unique_id": f"edgeemo_{device}_{key}", "state_class": "measurement",
            "unit_of_measurement": "%", "suggested_display_precision": 0, "icon": icon, "value_template": template}
