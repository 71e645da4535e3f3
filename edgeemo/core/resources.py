"""Files that ship inside the package: models, the sample video, the event schema."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the edgeemo folder


def _shipped(subdir: str, repo_folder: str) -> Path:
    """Package data of an installed wheel (edgeemo/<subdir>), else the repository folder of a checkout."""
    installed = PACKAGE / subdir
    return installed if installed.is_dir() else PACKAGE.parent / repo_folder


def models_dir() -> Path:
    return _shipped("models", "models")


def sample_video() -> Path:
    """The bundled 14 s RAVDESS demo clip (CC BY-NC-SA 4.0, see LICENSE-RAVDESS.txt beside it)."""
    return _shipped("samples", "samples") / "demo.mp4"


def event_schema() -> Path:
    return PACKAGE / "event.schema.json"


def resolve_model(name: str | Path, models: Path | None = None) -> Path:
    """A model path as written in the config: absolute, relative to cwd, or a file in models/."""
    path = Path(name)
    if path.is_absolute() or path.exists():
        return path
    return (models or models_dir()) / path
