"""The config is the daemon's user interface: the shipped YAML must match the code, and every mistake
must be reported with the key path so the user can fix it without reading the source."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from edgeemo.config.load import load_config, set_dotted
from edgeemo.config.schema import Config, ConfigError, MqttConfig
from edgeemo.config.secrets import mqtt_password

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_YAML = ROOT / "config" / "edgeemo.yaml"
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "edgeemo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_for(tmp_path: Path, text: str) -> str:
    """The ConfigError message load_config gives for this YAML text."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every dotted key of the model, descending into sections and into list items (`sources.0`)."""
    keys = set()
    for name, field in model.model_fields.items():
        key = prefix + name
        keys.add(key)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= model_keys(annotation, key + ".")
        for arg in getattr(annotation, "__args__", ()):  # list[SourceConfig]
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                keys |= model_keys(arg, key + ".0.")
    return keys


def yaml_keys(node: object, prefix: str = "") -> set[str]:
    """Every dotted key written in the YAML (first item of lists, as `key.0`)."""
    keys = set()
    if isinstance(node, dict):
        for name, value in node.items():
            keys.add(prefix + str(name))
            keys |= yaml_keys(value, f"{prefix}{name}.")
    elif isinstance(node, list) and node:
        keys |= yaml_keys(node[0], prefix + "0.")
    return keys


# (a) the shipped files ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [DEFAULT_YAML, *EXAMPLES], ids=lambda p: p.name)
def test_shipped_files_validate(path: Path) -> None:
    assert isinstance(load_config(path), Config)


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"home-assistant.yaml", "rtsp-camera.yaml", "webcam-with-microphone.yaml"}


def test_default_yaml_equals_code_defaults() -> None:
    assert load_config(DEFAULT_YAML).model_dump() == Config().model_dump()


def test_default_yaml_lists_every_key() -> None:
    raw = yaml.safe_load(DEFAULT_YAML.read_text())
    missing = model_keys(Config) - yaml_keys(raw)
    assert not missing, f"keys not documented in {DEFAULT_YAML.name}: {sorted(missing)}"


def test_default_yaml_comments_every_key() -> None:
    """Each key line is preceded by a comment line (or is a list item whose dash line carries one)."""
    lines = DEFAULT_YAML.read_text().splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        previous = lines[index - 1].strip().lstrip("- ").strip()
        assert previous.startswith("#"), f"line {index + 1} has no comment above it: {line!r}"


def test_home_assistant_example() -> None:
    cfg = load_config(ROOT / "config" / "examples" / "home-assistant.yaml")
    assert cfg.mqtt.url and cfg.mqtt.url.startswith("mqtt://") and "@" in cfg.mqtt.url
    assert cfg.mqtt.password_file is not None and not cfg.mqtt.tls.enabled


def test_rtsp_example() -> None:
    cfg = load_config(ROOT / "config" / "examples" / "rtsp-camera.yaml")
    assert cfg.sources[0].url.startswith("rtsp://")
    assert cfg.mqtt.url and cfg.mqtt.url.startswith("mqtts://") and cfg.mqtt.tls.ca_file is not None


def test_no_file_gives_defaults() -> None:
    assert load_config(None) == Config()


# (b)-(d) mistakes name the key -------------------------------------------------------------------


def test_unknown_key_names_path_and_allowed_keys(tmp_path: Path) -> None:
    message = error_for(tmp_path, "mqtt: {qso: 1}\n")
    assert "mqtt.qso" in message
    assert "unknown key" in message
    for allowed in MqttConfig.model_fields:
        assert allowed in message


def test_unknown_key_in_source_list(tmp_path: Path) -> None:
    message = error_for(tmp_path, "sources: [{name: a, uri: /dev/video0}]\n")
    assert "sources.0.uri" in message and "url" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = error_for(tmp_path, "device: x\n")
    assert "device" in message and "device_id" in message


def test_wrong_type_names_key(tmp_path: Path) -> None:
    message = error_for(tmp_path, "detector: {threads: many}\n")
    assert "detector.threads" in message and "many" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("mqtt: {qos: 5}\n", "mqtt.qos"),
        ("detector: {input_width: 300}\n", "detector.input_width"),
        ("sources: []\n", "sources"),
        ("sources: [{name: cam}, {name: cam}]\n", "sources"),
        ("mqtt: {url: 'mqtt://user:hunter2@broker'}\n", "mqtt.url"),
        ("mqtt: {url: 'http://broker'}\n", "mqtt.url"),
        ("mqtt: {url: 'mqtt://broker:99999'}\n", "mqtt.url"),
        ("mqtt: {url: 'mqtt://broker:0'}\n", "mqtt.url"),
        ("device_id: my device\n", "device_id"),
        ("log_level: verbose\n", "log_level"),
        ("detector: {backend: tensorrt}\n", "detector.backend"),
        ("detector: {score_threshold: 1.5}\n", "detector.score_threshold"),
        ("sources: [{name: a, max_fps: 0}]\n", "sources.0.max_fps"),
        ("metrics: {port: 70000}\n", "metrics.port"),
        ("mqtt: {topic_prefix: 'a/#'}\n", "mqtt.topic_prefix"),
        ("detector: 5\n", "detector"),
    ],
)
def test_impossible_value_names_key(tmp_path: Path, text: str, key: str) -> None:
    message = error_for(tmp_path, text)
    assert f": {key}: " in message, message
    assert "edgeemo.yaml" in message


def test_duplicate_source_names_are_shown(tmp_path: Path) -> None:
    message = error_for(tmp_path, "sources: [{name: cam}, {name: cam}]\n")
    assert "unique" in message and "cam" in message


def test_password_in_url_is_not_echoed(tmp_path: Path) -> None:
    """The message ends up in the journal: it must not repeat the secret it complains about."""
    message = error_for(tmp_path, "mqtt: {url: 'mqtt://user:hunter2@broker'}\n")
    assert "password" in message
    assert "hunter2" not in message


def test_every_problem_is_reported(tmp_path: Path) -> None:
    message = error_for(tmp_path, "mqtt: {qos: 5}\ndetector: {threads: 0}\n")
    assert "mqtt.qos" in message and "detector.threads" in message


# (e)-(f) file problems name the file -------------------------------------------------------------


def test_invalid_yaml_names_file(tmp_path: Path) -> None:
    message = error_for(tmp_path, "mqtt: [qos: 1\n")
    assert "edgeemo.yaml" in message and "YAML" in message


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    message = error_for(tmp_path, "- a\n- b\n")
    assert "edgeemo.yaml" in message and "mapping" in message


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing\n")) == Config()


def test_missing_file_names_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(missing)


# (g) command-line overrides ----------------------------------------------------------------------


def test_overrides_on_file(tmp_path: Path) -> None:
    path = write(tmp_path, "sources: [{name: cam, url: sample}]\nmqtt: {qos: 0}\n")
    cfg = load_config(path, {"sources.0.url": "/dev/video2", "mqtt.url": "mqtt://broker:1883"})
    assert cfg.sources[0].url == "/dev/video2" and cfg.sources[0].name == "cam"
    assert cfg.mqtt.url == "mqtt://broker:1883" and cfg.mqtt.qos == 0


def test_overrides_on_defaults() -> None:
    cfg = load_config(None, {"sources.0.url": "0", "mqtt.tls.enabled": "true", "detector.threads": "2"})
    assert cfg.sources[0].url == "0" and cfg.mqtt.tls.enabled is True and cfg.detector.threads == 2


def test_override_into_empty_section(tmp_path: Path) -> None:
    """`mqtt:` with nothing under it is null in YAML; an override must still be able to fill it."""
    cfg = load_config(write(tmp_path, "mqtt:\n"), {"mqtt.url": "mqtt://broker"})
    assert cfg.mqtt.url == "mqtt://broker"


def test_bad_override_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mqtt.qos"):
        load_config(None, {"mqtt.qos": "7"})


@pytest.mark.parametrize("dotted", ["sources.3.url", "sources.first.url", "log_level.x"])
def test_impossible_override_path_is_a_config_error(dotted: str) -> None:
    with pytest.raises(ConfigError, match=dotted.split(".")[0]):
        load_config(None, {dotted: "x"})


def test_set_dotted_creates_sections() -> None:
    raw: dict = {}
    set_dotted(raw, "mqtt.tls.ca_file", "/ca.pem")
    set_dotted(raw, "sources.0.url", "rtsp://cam")
    assert raw == {"mqtt": {"tls": {"ca_file": "/ca.pem"}}, "sources": [{"url": "rtsp://cam"}]}


# (h) the MQTT password ---------------------------------------------------------------------------


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A password file, a systemd credentials directory and the env var, all with different values."""
    (tmp_path / "password").write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("EDGEEMO_MQTT_PASSWORD", "from-env")
    return tmp_path


def test_password_file_comes_first(secrets: Path) -> None:
    assert mqtt_password(MqttConfig(password_file=secrets / "password")) == "from-file"


def test_credential_comes_second(secrets: Path) -> None:
    assert mqtt_password(MqttConfig()) == "from-credential"


def test_env_comes_last(secrets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (secrets / "creds" / "mqtt_password").unlink()
    assert mqtt_password(MqttConfig()) == "from-env"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert mqtt_password(MqttConfig()) == "from-env"


def test_env_var_name_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("BROKER_PW", "other")
    assert mqtt_password(MqttConfig(password_env="BROKER_PW")) == "other"


def test_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("EDGEEMO_MQTT_PASSWORD", raising=False)
    assert mqtt_password(MqttConfig()) is None


def test_unreadable_password_file_names_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mqtt.password_file"):
        mqtt_password(MqttConfig(password_file=tmp_path / "missing"))


def test_voice_windows_must_fit_and_errors_name_the_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"voice: .*hop_s \(4.0\).*window_s \(3.0\)"):
        load_config(write(tmp_path, "voice:\n  hop_s: 4\n"))
    with pytest.raises(ConfigError, match="fusion: .*cannot both be 0"):
        load_config(write(tmp_path, "fusion:\n  face_weight: 0\n  voice_weight: 0\n"))
    with pytest.raises(ConfigError, match=r"microphone\.channels: .*greater than or equal to 1"):
        load_config(write(tmp_path, "microphone:\n  channels: 0\n"))
    assert load_config(write(tmp_path, "microphone:\n  device: USB\n")).microphone.device == "USB"


def test_bare_camera_index_and_on_off_words(tmp_path: Path) -> None:
    """`url: 0` and `audio: off` unquoted (YAML 1.1 would make them an int and a boolean) are the words."""
    cfg = load_config(write(tmp_path, "sources:\n  - url: 0\n    audio: off\nmetrics:\n  enabled: off\n"
                                      "web:\n  enabled: yes\ndevice_id: on\n"))
    assert (cfg.sources[0].url, cfg.sources[0].audio) == ("0", "off")
    assert cfg.metrics.enabled is False and cfg.web.enabled is True and cfg.device_id == "on"
    assert load_config(write(tmp_path, "sources:\n  - url: sample\n    audio: false\n")).sources[0].audio == "off"
