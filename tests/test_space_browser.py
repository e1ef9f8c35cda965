"""The Space in a real browser: `python spaces/app.py` on the tiny checkpoint, driven by Playwright in Chromium.

Needs `/usr/bin/chromium` (`apt-get install chromium`; no browser download) and the `playwright` package. Set
`UNIMEDVL_SCREENSHOTS=docs/screenshots` to keep the screenshots of each tab (otherwise they go to a temporary folder).
"""

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import unimedvl.spaces


pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("UNIMEDVL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
APP = Path(unimedvl.spaces.__file__).resolve().parent / "app.py"
EXAMPLES = APP.parent / "examples"
SIZE = 64
TIMEOUT_MS = 60_000  # generous: two loaded cores

if not CHROMIUM.exists():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect
expect.set_options(timeout=TIMEOUT_MS)  # `expect` has its own 5 s default, too short on loaded CI machines

TIMINGS: dict[str, float] = {}


def timed(name: str):
    class Timer:
        def __enter__(self):
            self.start = time.perf_counter()

        def __exit__(self, *exc):
            TIMINGS[name] = round(time.perf_counter() - self.start, 2)

    return Timer()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("UNIMEDVL_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def app_url(reference_checkpoint, tmp_path_factory):
    """`python spaces/app.py` exactly as the README runs it, on a free port, with small generation defaults."""
    workdir = tmp_path_factory.mktemp("app")
    log_path = workdir / "app.log"
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(workdir / "gradio"),
    }
    command = [
        sys.executable,
        str(APP),
        "--model",
        str(reference_checkpoint),
        "--size",
        str(SIZE),
        "--steps",
        "2",
        "--max-new-tokens",
        "8",
        "--port",
        str(port),
    ]
    with timed("app start (process to first page)"), open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with status {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the app did not start within 240 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    assert "demo request failed" not in log_path.read_text()  # no unexpected error was logged by the app


@pytest.fixture(scope="module")
def page(app_url, screenshots):
    with sync_api.sync_playwright() as playwright:
        with timed("browser launch"):
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        with timed("page load"):
            page.goto(app_url, wait_until="domcontentloaded")
            page.locator("#chat-file").wait_for()
        yield page
        browser.close()
    (screenshots / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
    print("\nbrowser test timings (s):", json.dumps(TIMINGS))


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def upload(page, prefix: str, path: Path) -> None:
    clear = page.locator(f"#{prefix}-file button[aria-label=Clear]")
    if clear.count():  # a file is already there: remove it to get the upload box back
        clear.click()
    page.locator(f"#{prefix}-file input[type=file]").set_input_files(str(path))


def wait_until_idle(page, elem_id: str) -> None:
    """Wait until the component's pending indicator is gone: a streamed answer has finished (a click on a button
    whose event is still running is ignored by Gradio)."""
    expect(page.locator(f"#{elem_id} [data-testid=status-tracker]").first).to_have_class(re.compile(r"\bhide\b"))


def save_screenshot(page, folder: Path, name: str) -> None:
    """A small PNG (256-colour palette) of the visible page."""
    from PIL import Image

    page.evaluate("window.scrollTo(0, 0)")
    image = Image.open(io.BytesIO(page.screenshot(full_page=False))).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(folder / f"{name}.png", optimize=True)


def test_disclaimer_is_visible(page):
    disclaimer = page.locator("#disclaimer")
    expect(disclaimer).to_be_visible()
    expect(disclaimer).to_contain_text("Research use only")
    expect(disclaimer).to_contain_text("must not be used for diagnosis")


def test_chat_about_a_real_dicom(page, screenshots):
    open_tab(page, "Chat / VQA")
    with timed("chat: DICOM upload to preview"):
        upload(page, "chat", EXAMPLES / "CT_small.dcm")
        expect(page.locator("#chat-preview img").first).to_be_visible()
        expect(page.locator("#chat-info")).to_contain_text("DICOM")
    with timed("chat: question to answer"):
        page.locator("#chat-question textarea").fill("Which organ is shown in this CT image?")
        page.locator("#chat-ask").click()
        answer = page.locator("#chatbot [data-testid=bot]").first
        expect(answer).to_be_visible()
        expect(answer).not_to_have_text("")
        wait_until_idle(page, "chatbot")
    expect(page.locator("#chatbot [data-testid=user]").first).to_contain_text("Which organ")
    with timed("chat: follow-up question"):
        page.locator("#chat-question textarea").fill("Is there any abnormality?")
        page.locator("#chat-ask").click()
        expect(page.locator("#chatbot [data-testid=bot]")).to_have_count(2)
    save_screenshot(page, screenshots, "chat")


def test_bad_upload_shows_a_friendly_error(page, tmp_path, screenshots):
    fake = tmp_path / "not_really.dcm"
    fake.write_bytes(b"this file only pretends to be DICOM\n" * 20)
    open_tab(page, "Report")
    upload(page, "report", EXAMPLES / "CT_small.dcm")  # a good file first: its preview must not survive the bad one
    expect(page.locator("#report-preview img").first).to_be_visible()
    with timed("bad upload to error message"):
        upload(page, "report", fake)
        # `.first`: an upload can fire two change events under load, hence two identical toasts.
        toast = page.locator("[data-testid=toast-text]").filter(has_text="not a valid DICOM file").first
        expect(toast).to_be_visible()
    expect(toast).to_contain_text("'not_really.dcm' is not a valid DICOM file")  # the name, never a server path
    assert "Traceback" not in page.locator("body").inner_text()
    expect(page.locator("#report-preview img")).to_have_count(0)  # no stale preview is left to send
    page.wait_for_timeout(800)  # let the toast finish sliding in (it closes itself after 10 s)
    save_screenshot(page, screenshots, "bad_upload")


def test_report_tab(page, screenshots):
    open_tab(page, "Report")
    with timed("report: upload and write"):
        upload(page, "report", EXAMPLES / "MR_small.dcm")
        expect(page.locator("#report-preview img").first).to_be_visible()
        page.locator("#report-run").click()
        expect(page.locator("#report-output textarea")).not_to_have_value("")
    save_screenshot(page, screenshots, "report")


def test_text_to_image_renders_an_image(page, screenshots):
    open_tab(page, "Text to image")
    page.locator("#t2i-prompt textarea").fill("A PA chest X-ray image showing a right lower lobe pneumonia.")
    with timed("text-to-image: click to rendered image"):
        page.locator("#t2i-run").click()
        image = page.locator("#t2i-output img").first
        expect(image).to_be_visible()
        page.wait_for_function("() => document.querySelector('#t2i-output img')?.naturalWidth > 0")
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [SIZE, SIZE]
    save_screenshot(page, screenshots, "text_to_image")


def test_image_to_image_with_a_nifti_volume(page, screenshots):
    open_tab(page, "Image to image")
    with timed("image-to-image: NIfTI upload to preview"):
        upload(page, "edit", EXAMPLES / "head_phantom.nii.gz")
        expect(page.locator("#edit-preview img").first).to_be_visible()
        expect(page.locator("#edit-info")).to_contain_text("axial slice 25 of 48")
    expect(page.locator("#edit-index")).to_be_visible()  # the slice slider appears for volumes
    page.locator("#edit-plane").get_by_text("coronal").click()
    expect(page.locator("#edit-info")).to_contain_text("coronal slice 57 of 112")
    page.locator("#edit-task").get_by_text("Modality translation").click()
    expect(page.locator("#edit-instruction textarea")).to_have_value(
        "Translate this T2-weighted MRI image into a FLAIR MRI image of the same slice, preserving the anatomy."
    )
    with timed("image-to-image: click to rendered output"):
        page.locator("#edit-run").click()
        expect(page.locator("#edit-output img").first).to_be_visible()
    save_screenshot(page, screenshots, "image_to_image")
