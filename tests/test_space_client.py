"""The demo behind `gradio_client`: every endpoint on the tiny reference checkpoint, plus the app's safety rules."""

import os
import socket
from pathlib import Path

import httpx
import pytest
from PIL import Image


gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import unimedvl.spaces  # noqa: E402


EXAMPLES = Path(unimedvl.spaces.__file__).resolve().parent / "examples"
SIZE = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(reference_checkpoint):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from unimedvl.spaces.app import build_app, launch
    from unimedvl.spaces.demo_options import DemoSettings

    settings = DemoSettings(size=SIZE, steps=2, max_new_tokens=8, max_upload_mb=1)
    app = build_app(str(reference_checkpoint), settings)
    _, url, _ = launch(
        app, settings, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
    )
    yield app, url
    app.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server[1], verbose=False, download_files=str(tmp_path_factory.mktemp("client")))


@pytest.fixture(scope="module")
def ct_preview(client) -> str:
    image, info, index = client.predict(
        handle_file(str(EXAMPLES / "CT_small.dcm")), "soft-tissue", "axial", 0, api_name="/preview"
    )
    return image


def test_endpoints_are_named(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert names == {"/preview", "/chat", "/report", "/generate", "/edit"}


def test_preview_of_a_real_dicom(client, ct_preview):
    with Image.open(ct_preview) as image:
        assert image.size == (128, 128) and image.format == "PNG"  # lossless: what the model sees


def test_preview_of_a_nifti_volume(client):
    image, info, index = client.predict(
        handle_file(str(EXAMPLES / "head_phantom.nii.gz")), "brain", "coronal", 500, api_name="/preview"
    )
    assert index == 111 and "coronal slice 112 of 112" in info  # clamped to the last slice
    with Image.open(image) as shown:
        assert shown.size == (96, 48)


def test_chat_streams_an_answer_and_keeps_the_history(client, ct_preview):
    history, cleared = client.predict(
        "Which organ is shown?", handle_file(ct_preview), [], 8, 0.0, False, api_name="/chat"
    )
    assert cleared == ""
    assert [message["role"] for message in history] == ["user", "assistant"]
    assert history[1]["content"][0]["text"]  # some answer (the tiny model's is gibberish)
    history, _ = client.predict(
        "And the other side?", handle_file(ct_preview), history, 4, 0.0, False, api_name="/chat"
    )
    assert [message["role"] for message in history] == ["user", "assistant", "user", "assistant"]


def test_chat_without_an_image_and_with_sampling(client):
    history, _ = client.predict("Hello", None, [], 4, 0.7, False, api_name="/chat")
    assert len(history) == 2


def test_report(client, ct_preview):
    report = client.predict(handle_file(ct_preview), "CT", "abdominal pain", 8, api_name="/report")
    assert isinstance(report, str) and report


def test_generate_is_seeded(client):
    args = ("A PA chest X-ray image.", 2, 3.0, 3.0, 7, False, SIZE, SIZE, False)
    first, seed, plan = client.predict(*args, api_name="/generate")
    second, _, _ = client.predict(*args, api_name="/generate")
    assert seed == 7 and plan == ""
    with Image.open(first) as a, Image.open(second) as b:
        assert a.size == (SIZE, SIZE) and a.tobytes() == b.tobytes()
    _, random_seed, _ = client.predict(*args[:5], True, *args[6:], api_name="/generate")
    assert 0 <= random_seed < 2**31


def test_edit(client, ct_preview):
    image, seed, notes = client.predict(
        handle_file(ct_preview),
        "Make this image sharper.",
        False,
        2,
        4.0,
        2.0,
        3.0,
        3,
        False,
        False,
        SIZE,
        SIZE,
        api_name="/edit",
    )
    assert seed == 3
    with Image.open(image) as output:
        assert output.size == (SIZE, SIZE)


@pytest.mark.parametrize(
    ("api_name", "args", "message"),
    [
        ("/chat", ("", None, [], 4, 0.0, False), "Please type a question"),
        ("/report", (None, "CT", "", 4), "upload an image"),
        ("/edit", (None, "x", False, 2, 4.0, 2.0, 3.0, 0, False, False, SIZE, SIZE), "upload an input image"),
        ("/generate", ("x", 2, 3.0, 3.0, 0, False, 72, SIZE, False), "multiple of 16"),
    ],
)
def test_bad_requests_get_friendly_messages(client, api_name, args, message):
    with pytest.raises(AppError, match=message) as caught:
        client.predict(*args, api_name=api_name)
    assert "Traceback" not in str(caught.value)


def test_bad_uploads_get_friendly_messages(client, tmp_path):
    fake = tmp_path / "scan.dcm"
    fake.write_bytes(b"this is not DICOM " * 10)
    with pytest.raises(AppError, match="not a valid DICOM file"):
        client.predict(handle_file(str(fake)), "auto", "axial", 0, api_name="/preview")
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * (2 << 20))  # over the 1 MB limit of this server
    with pytest.raises(Exception, match="413|exceeds|too large|maximum"):  # refused by Gradio's upload route
        client.predict(handle_file(str(big)), "auto", "axial", 0, api_name="/preview")


def test_server_paths_are_neither_opened_nor_served(server):
    """A request naming a file on the server (not an upload) is refused, and such files are not downloadable."""
    outside = str(EXAMPLES / "CT_small.dcm")
    payload = {"data": [{"path": outside, "meta": {"_type": "gradio.FileData"}}, "auto", "axial", 0]}
    with httpx.Client(base_url=server[1], timeout=30) as http:
        event = http.post("gradio_api/call/preview", json=payload).json()["event_id"]
        stream = http.get(f"gradio_api/call/preview/{event}").text
        assert "event: error" in stream and "event: complete" not in stream
        for path in (outside, "/etc/passwd"):
            assert http.get(f"gradio_api/file={path}").status_code in (403, 404)


def test_model_calls_share_one_bounded_queue(server):
    app, _ = server
    assert app._queue.max_size == 16
    limits = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in app.fns.values() if fn.api_name}
    for name in ("chat", "report", "generate", "edit"):
        assert limits[name] == ("model", 1), name
    assert limits["preview"][0] != "model"  # decoding uploads does not wait for the model


def test_generation_reports_progress_per_step(server):
    from unimedvl.spaces.demo_model import SamplingSettings

    app, _ = server
    steps = []
    app.unimedvl_model.generate(
        "A CT image.", SamplingSettings(steps=3, height=SIZE, width=SIZE), on_step=lambda *s: steps.append(s)
    )
    assert steps == [(1, 3), (2, 3), (3, 3)]
