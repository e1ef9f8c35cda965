# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The folder uploaded as the Hugging Face Space (used by `unimedvl push --space-id`).

A Space's `requirements.txt` is installed before the rest of the repository is copied into the build, so it cannot
point at a wheel or source tree inside the Space. Instead the Space carries the package itself, as plain source:

    app.py, README.md, requirements.txt, examples/    this folder (README front matter: the model it serves)
    unimedvl/                                         the package's Python files (the modules the app imports)

The Space runs `python app.py`; Python puts the app's folder first on `sys.path`, so `import unimedvl` finds the
copy next to it and `import spaces` still finds Hugging Face's ZeroGPU package (ours is `unimedvl/spaces`).
`requirements.txt` lists the package's third-party dependencies (Gradio itself comes from the Space's `sdk_version`).
"""

import importlib.util
import shutil
from pathlib import Path

from huggingface_hub import SpaceCard


SPACE_DIR = Path(__file__).resolve().parent
SPACE_FILES = ("app.py", "README.md", "requirements.txt")
SPACE_FOLDERS = ("examples",)

# The subpackages the app needs, copied as `unimedvl/...`; training and evaluation code stay out of the Space.
VENDORED_PACKAGES = ("unimedvl", "unimedvl.commands", "unimedvl.modeling", "unimedvl.pipelines", "unimedvl.spaces")
VENDOR_ROOT = "unimedvl"


def package_sources() -> dict[str, Path]:
    """`{path in the Space: source file}` for every module of `VENDORED_PACKAGES` (from the installed package, so it
    works for editable and regular installs alike)."""
    sources = {}
    for package in VENDORED_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"cannot locate the installed package {package!r}")
        folder = Path(next(iter(spec.submodule_search_locations)))
        target = Path(VENDOR_ROOT, *package.split(".")[1:])
        for source in sorted(folder.glob("*.py")):
            sources[(target / source.name).as_posix()] = source
    return sources


def space_sources(model_id: str | None = None) -> dict[str, Path | str]:
    """Everything the Space repository holds: `{path in the Space: source file, or text for generated files}`."""
    files: dict[str, Path | str] = {}
    for name in SPACE_FILES:
        files[name] = SPACE_DIR / name
    for folder in SPACE_FOLDERS:
        for source in sorted((SPACE_DIR / folder).rglob("*")):
            if source.is_file() and "__pycache__" not in source.parts:
                files[source.relative_to(SPACE_DIR).as_posix()] = source
    if model_id:
        files["README.md"] = space_readme(model_id)
    files.update(package_sources())
    return files


def space_readme(model_id: str) -> str:
    """The Space README with `models:` set to the model it serves."""
    card = SpaceCard.load(SPACE_DIR / "README.md")
    card.data.models = [model_id]
    return str(card)


def build_space_folder(destination: str | Path, model_id: str | None = None) -> Path:
    """Write the Space repository's content into `destination` (created; must be empty or absent)."""
    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()):
        raise FileExistsError(f"{destination} is not empty")
    for relative, source in space_sources(model_id).items():
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            shutil.copyfile(source, target)
        else:
            target.write_text(source, encoding="utf-8")
    return destination


__all__ = ["VENDORED_PACKAGES", "build_space_folder", "package_sources", "space_readme", "space_sources"]
