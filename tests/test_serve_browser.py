"""`bigbigan serve` in a real browser: the command a user types starts the page on the shipped
model, and headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) loads it,
generates a grid, interpolates, reconstructs an upload, downloads a `.bin`, sees the message
for a bad upload, and saves a screenshot. Skipped only where Chromium or its driver is missing.

The screenshot goes to $BIGBIGAN_TEST_ARTIFACTS when set, else to pytest's tmp_path; the test
prints where.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SRC = Path(__file__).resolve().parents[1] / "src"
START_SECONDS = 900  # exports and compiles at start-up: minutes on a loaded 2-core machine
REQUEST_SECONDS = 120
# Chromium on a closed network, as root (the machine's own notes on what works).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    tmpdir: Path  # TMPDIR of the server: its temporary folder lives here
    cwd: Path  # where it was started: must stay empty
    output: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """A suite started in the background (`pytest &` in a script) ignores SIGINT, and so would
    the server it starts (Python leaves an ignored SIGINT ignored), making Ctrl-C a no-op there:
    the server gets the default disposition a terminal's Ctrl-C meets (a handler does not
    survive exec; an ignored signal does)."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python -m bigbigan serve --port N` on the shipped model, as the README says."""
    root = tmp_path_factory.mktemp("serve_browser")
    tmpdir, cwd = root / "tmp", root / "cwd"
    tmpdir.mkdir()
    cwd.mkdir()
    port = _free_port()
    # PYTHONFAULTHANDLER: SIGABRT makes it print every thread's stack (see the stopping test)
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    with _sigint_not_ignored():
        process = subprocess.Popen(
            [sys.executable, "-m", "bigbigan", "serve", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    running = Server(f"http://127.0.0.1:{port}/", process, tmpdir, cwd)
    reader = threading.Thread(target=lambda: running.output.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + START_SECONDS
    while not any(line.startswith("serving on") for line in running.output):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"bigbigan serve did not start:\n{''.join(running.output)}")
        time.sleep(0.5)
    while True:  # the line comes once the port answers; check it does
        try:
            with urllib.request.urlopen(running.url, timeout=10) as response:
                assert response.status == 200
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"bigbigan serve does not answer:\n{''.join(running.output)}")
            time.sleep(0.5)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install both)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, "--window-size=1400,1000"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser, server: Server) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server.url)
    _wait_text(browser, "header", "compiled ort")
    assert browser.find_element(By.ID, "grid-run").is_displayed()


def _wait_text(browser, element_id: str, text: str) -> str:
    """The element's text once it contains `text` (fails with what it showed instead)."""
    from selenium.common.exceptions import NoSuchElementException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(driver) -> str | bool:
        try:
            found = driver.find_element(By.ID, element_id).text
        except NoSuchElementException:
            return False
        return found if text in found else False

    try:
        return WebDriverWait(browser, REQUEST_SECONDS).until(shown)
    except TimeoutException:
        found = browser.find_elements(By.ID, element_id)
        shows = found[0].text if found else None
        pytest.fail(f"#{element_id} never showed {text!r}; it shows {shows!r}")


def _image_width(browser, element_id: str) -> int:
    """The natural width of the picture shown in #element_id (0: none, loading or broken)."""
    return browser.execute_script(
        "const img = document.querySelector(`#${arguments[0]} img`);"
        "return img && img.complete ? img.naturalWidth : 0;",
        element_id,
    )


def _image_loaded(browser, element_id: str) -> int:
    """The natural width of the picture in #element_id once it has loaded (0 if it never
    does): the status text can arrive before the picture."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, 30).until(lambda b: _image_width(b, element_id))
    except TimeoutException:
        return 0


def _upload(browser, path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BIGBIGAN_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_grid_is_generated_and_downloadable(browser, server: Server) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, server)
    browser.find_element(By.ID, "grid-run").click()
    status = _wait_text(browser, "grid-status", "model time")
    assert "generator: onnxruntime (compiled ort), fp32, batch 80" in status  # 10 classes × 8
    assert _image_loaded(browser, "grid-image") > 8 * 32
    anchors = browser.find_elements(By.CSS_SELECTOR, "#grid-files a[download]")
    links = {a.get_attribute("download"): a.get_attribute("href") for a in anchors}
    names = set(links)
    assert {"grid.png", "x1.bin", "x1.bin.json", "x2.bin", "images.bin"} <= names, names
    with urllib.request.urlopen(links["x1.bin"], timeout=30) as response:
        noise = np.frombuffer(response.read(), "<f4")
    assert noise.size == 80 * 100 and np.abs(noise).max() <= 2.0
    folder = next(line for line in server.output if line.startswith("serving on"))
    folder = folder.rsplit("temporary folder ", 1)[1].rstrip(")\n")
    model = f"{server.url}gradio_api/file={folder}/models/G.onnx"  # beside the downloads
    assert Path(folder, "models", "G.onnx").is_file()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(model, timeout=30)
    assert refused.value.code in (403, 404)


def test_interpolation_between_two_classes(browser, server: Server) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, server)
    browser.find_element(By.ID, "interp-run").click()
    status = _wait_text(browser, "interp-status", "model time")
    assert "seed 0 T-shirt/top → seed 1 Sneaker, 10 steps" in status
    assert "generator: onnxruntime (compiled ort), fp32, batch 10" in status
    assert _image_loaded(browser, "interp-image") > 10 * 32


def test_upload_is_reconstructed_and_the_page_captured(
    browser, server: Server, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    picture = Image.new("L", (96, 96), 0)  # light trousers on black, like the data
    for box in ((30, 6, 66, 30), (30, 6, 46, 90), (50, 6, 66, 90)):
        picture.paste(230, box)
    picture.save(tmp_path / "trousers.png")
    _open(browser, server)
    browser.find_element(By.ID, "grid-run").click()  # the screenshot shows every section
    _wait_text(browser, "grid-status", "model time")
    browser.find_element(By.ID, "interp-run").click()
    _wait_text(browser, "interp-status", "model time")
    _upload(browser, tmp_path / "trousers.png")
    status = _wait_text(browser, "recon-status", "model time")
    assert "classifier reads x as" in status and "classifier reads G(E(x)) as" in status
    assert "encoder: onnxruntime (exported onnx), fp32, batch 1" in status
    assert "generator: onnxruntime (compiled ort), fp32, batch 1" in status
    assert _image_loaded(browser, "recon-image") > 0
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 200, 4000))
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)  # let the resized page paint
    shot = _artifacts(tmp_path) / "serve.png"
    assert browser.save_screenshot(str(shot))
    print(f"screenshot of the page: {shot}")
    browser.set_window_size(1400, 1000)


def test_a_test_image_is_picked_and_reconstructed(browser, server: Server) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, server)
    browser.find_element(By.CSS_SELECTOR, "button.gallery-item").click()  # the first test image
    browser.find_element(By.ID, "recon-run").click()
    status = _wait_text(browser, "recon-status", "model time")
    assert "classifier reads x as" in status


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("notes.txt", "upload refused: notes.txt is not an image"),
        ("noise.png", "upload refused: noise.png is 1.4 MB, the limit is 1.0 MB"),
    ],
)
def test_bad_upload_shows_the_message(
    browser, server: Server, tmp_path: Path, name: str, expected: str
) -> None:
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("not a picture\n")
    else:  # noise does not compress: a 700×700 RGB PNG is about 1.4 MB
        pixels = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    _open(browser, server)
    _upload(browser, path)
    assert expected in _wait_text(browser, "recon-status", "upload refused")
    assert _image_width(browser, "recon-image") == 0


def test_concurrent_calls_through_the_queue_do_not_mix(server: Server, tmp_path: Path) -> None:
    """Several grids at once through Gradio's queue (its own client, as a script would call
    the page): each call gets its own pictures, the same as when it ran alone."""
    from gradio_client import Client

    client = Client(server.url, verbose=False, download_files=str(tmp_path))

    def grid(job: tuple[int, int]) -> tuple[np.ndarray, str]:
        label, seed = job
        _, status, files = client.predict([label], seed, 3, 1.5, api_name="/grid")
        images = next(Path(f) for f in files if Path(f).name == "images.bin")
        return np.fromfile(images, "<f4"), status

    jobs = [(label, 10 * label) for label in range(6)]
    alone = [grid(job)[0] for job in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(grid, jobs * 2))
    for i, (images, status) in enumerate(together):
        assert "batch 3" in status
        np.testing.assert_array_equal(images, alone[i % len(jobs)])
    assert not np.array_equal(alone[0], alone[1])


def test_stopping_leaves_nothing_behind(server: Server) -> None:
    """Runs last: Ctrl-C stops the server, which deletes its temporary folder."""
    assert any(p.name.startswith("bigbigan-serve-") for p in server.tmpdir.iterdir())
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:  # say where it hangs: every thread's stack, then fail
        server.process.send_signal(signal.SIGABRT)
        server.process.wait(timeout=30)
        time.sleep(1)  # the reader thread drains the pipe
        pytest.fail("still running 60 s after Ctrl-C; output:\n" + "".join(server.output))
    assert list(server.tmpdir.iterdir()) == [], "".join(server.output)
    assert list(server.cwd.iterdir()) == []
