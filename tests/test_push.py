"""`unimedvl push`: the dry-run listing, argument checks, and clear failures without network (all offline)."""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from unimedvl.cli import main as cli_main
from unimedvl.commands.push import describe_hub_error


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "UniMedVL-hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "unimedvl"}))
    (folder / "modeling_unimedvl.py").write_text("# custom code\n")
    save_file({"w": np.zeros((4, 4), np.float32)}, str(folder / "model.safetensors"))
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "modeling_unimedvl.cpython-311.pyc").write_bytes(b"\x00")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return folder


def snapshot(folder):
    return sorted((path.relative_to(folder).as_posix(), path.stat().st_mtime_ns) for path in folder.rglob("*"))


def test_dry_run_lists_model_and_space_files_and_changes_nothing(checkpoint, capsys):
    before = snapshot(checkpoint.parent)
    status = cli_main(
        [
            "push",
            str(checkpoint),
            "--repo-id",
            "me/UniMedVL-hf",
            "--space-id",
            "me/UniMedVL-demo",
            "--private",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert snapshot(checkpoint.parent) == before  # no card written, nothing created

    model, space = out.split("Space (gradio)")
    assert "Model repository me/UniMedVL-hf (private if created)" in model
    assert re.search(r"\d+ B  model\.safetensors", model)
    for name in ("config.json", "modeling_unimedvl.py"):
        assert f"  {name}" in model
    assert ".pyc" not in model and ".git" not in model
    assert "3 files" in model
    assert "README.md: no model card yet" in model and "model_index.json" in model

    assert "me/UniMedVL-demo (private if created)" in space
    for name in (
        "app.py",
        "README.md",
        "requirements.txt",
        "examples/CT_small.dcm",
        "unimedvl/__init__.py",
        "unimedvl/spaces/app.py",
        "unimedvl/modeling/modeling_unimedvl.py",
    ):
        assert f"  {name}\n" in space, name
    assert "variable UNIMEDVL_MODEL=me/UniMedVL-hf" in space
    assert "Dry run: nothing was written, created or uploaded." in space


def test_space_only_dry_run_serves_the_default_model(capsys, monkeypatch):
    monkeypatch.setenv("UNIMEDVL_MODEL", "someone/small-unimedvl")
    assert cli_main(["push", "--space-id", "me/demo", "--dry-run"]) == 0
    assert "variable UNIMEDVL_MODEL=someone/small-unimedvl" in capsys.readouterr().out
    assert cli_main(["push", "--space-id", "me/demo", "--space-model", "other/model", "--dry-run"]) == 0
    assert "variable UNIMEDVL_MODEL=other/model" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["push", "--dry-run"], "nothing to push"),
        (["push", "--repo-id", "me/x", "--dry-run"], "needs the CHECKPOINT"),
        (["push", "{ckpt}", "--dry-run"], "needs --repo-id"),
        (["push", "{ckpt}", "--repo-id", "not a repo id!", "--dry-run"], "--repo-id"),
        (["push", "--space-id", "no-owner", "--dry-run"], "owner/name"),
        (["push", "{empty}", "--repo-id", "me/x", "--dry-run"], "unimedvl convert"),
        (["push", "{missing}", "--repo-id", "me/x", "--dry-run"], "is not a folder"),
    ],
)
def test_bad_arguments(checkpoint, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    paths = {"ckpt": str(checkpoint), "empty": str(tmp_path / "empty"), "missing": str(tmp_path / "missing")}
    assert cli_main([arg.format(**paths) for arg in argv]) == 2
    assert message in capsys.readouterr().err


def run_push(args, **env):
    """`unimedvl push` in a fresh interpreter, so huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE from `env`."""
    environment = {**os.environ, "HF_TOKEN": "hf_not_a_real_token", **env}
    return subprocess.run(
        [sys.executable, "-m", "unimedvl.cli", "push", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_push_without_network_fails_with_a_clear_message(checkpoint):
    result = run_push(
        [str(checkpoint), "--repo-id", "me/UniMedVL-hf"],
        HF_HUB_OFFLINE="0",
        HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
    )
    assert result.returncode == 2, result.stderr
    assert "error: could not reach the Hugging Face Hub at http://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (checkpoint / "README.md").exists()  # nothing was written before the Hub answered


def test_push_in_offline_mode_fails_with_a_clear_message():
    result = run_push(["--space-id", "me/demo"], HF_HUB_OFFLINE="1")
    assert result.returncode == 2
    assert "HF_HUB_OFFLINE" in result.stderr and "Traceback" not in result.stderr


def test_hub_error_messages():
    httpx2 = pytest.importorskip("httpx2")  # huggingface_hub's HTTP client
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    response = httpx2.Response(403, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"))
    assert "refused access to me/x (HTTP 403)" in describe_hub_error(
        HfHubHTTPError("forbidden", response=response), "me/x"
    )
    assert "hf auth login" in describe_hub_error(LocalTokenNotFoundError("no token"), "me/x")
