"""Files that ship inside the package: models, the sample video, the default config."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _shipped(package: str, repo_folder: str) -> Path:
    """Package data of an installed wheel, or the repository folder in a source / editable checkout."""
    try:
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / repo_folder


def models_dir() -> Path:
    return _shipped("edgeemo.models", "models")


def sample_video() -> Path:
    """The bundled 14 s RAVDESS demo clip (CC BY-NC-SA 4.0, see LICENSE-RAVDESS.txt beside it)."""
    return _shipped("edgeemo.samples", "samples") / "demo.mp4"


def default_config() -> Path:
    return _shipped("edgeemo.defaults", "config") / "edgeemo.yaml"


def event_schema() -> Path:
    return Path(str(resources.files("edgeemo"))) / "event.schema.json"


def resolve_model(name: str | Path, models: Path | None = None) -> Path:
    """A model path as written in the config: absolute, relative to cwd, or a file in models/."""
    path = Path(name)
    if path.is_absolute() or path.exists():
        return path
    return (models or models_dir()) / path
