"""Fixtures for the browser tests: a throwaway JupyterLab server and a headless Chromium.

Run with ``make test-browser`` (it installs Chromium and Playwright when missing). These tests are
kept out of ``tests/`` so that ``make test`` does not need a browser.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTEFACTS = REPO / "test-artefacts" / "browser"
# The notebooks to serve; ANEE_BROWSER_NOTEBOOKS points elsewhere when debugging the harness.
NOTEBOOKS = Path(os.environ.get("ANEE_BROWSER_NOTEBOOKS", REPO / "notebooks"))
CHROMIUM = os.environ.get("ANEE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODEL = "smollm2-135m"
SERVER_START_TIMEOUT = 60

_screenshots: list[Path] = []


@dataclass
class LabServer:
    url: str  # http://127.0.0.1:PORT
    token: str
    root: Path  # the folder the server serves (copies of the notebooks)
    log: Path

    def api(self, path: str, method: str = "GET", body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", method=method, data=data,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def start_kernel(self, notebook: str) -> str:
        """Start the notebook's kernel session through the REST API before the page opens the notebook.

        The page then joins this session. Left to the page, a cold server can start two kernels for
        one notebook (one is shut down at once) and Run All then runs only the first cell.
        """
        session = self.api("/api/sessions", "POST", {"path": notebook, "name": notebook, "type": "notebook",
                                                      "kernel": {"name": "python3"}})
        return session["kernel"]["id"]

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, server: LabServer | None) -> None:
    """Shut kernels down, then the server (SIGTERM, then SIGKILL of its process group and children)."""
    if proc.poll() is None and server is not None:
        with contextlib.suppress(Exception):  # best effort; the kill below still runs
            for kernel in server.api("/api/kernels") or []:
                server.api(f"/api/kernels/{kernel['id']}", method="DELETE")
    children = []
    with contextlib.suppress(Exception):  # psutil missing or the server already gone
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)  # kernels run in their own sessions
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    for child in children:
        with contextlib.suppress(Exception):  # already exited
            child.kill()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """JupyterLab on 127.0.0.1:<random port> with a random token, serving copies of the notebooks."""
    if not NOTEBOOKS.is_dir():
        pytest.fail(f"no notebooks folder at {NOTEBOOKS}")
    base = tmp_path_factory.mktemp("lab")
    root = base / "work"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = base / "user-settings"
    # Offline: never ask about, nor fetch, news and update checks (no popup over the notebook).
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # Start the notebook's kernel without a "Select Kernel" dialog; keep every cell in the DOM (no
    # windowing), so that the test sees all prompts and widgets of a long notebook.
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"autoStartDefaultKernel": True, "windowingMode": "none"}))
    config_dir = base / "config"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(json.dumps({
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
    }))
    port, token = _free_port(), secrets.token_hex(24)
    env = dict(os.environ, ANEE_MODEL=MODEL, HF_HUB_OFFLINE="1", JUPYTER_CONFIG_DIR=str(config_dir),
               JUPYTER_RUNTIME_DIR=str(base / "runtime"), IPYTHONDIR=str(base / "ipython"),
               JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1")
    env.pop("JUPYTER_TOKEN", None)
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = base / "jupyter.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = LabServer(url=f"http://127.0.0.1:{port}", token=token, root=root, log=log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in {SERVER_START_TIMEOUT}s:\n{server.log_tail()}")
                time.sleep(0.25)
        yield server
    finally:
        _stop(proc, server)


@pytest.fixture(autouse=True)
def _shutdown_kernels(request):
    """Each test starts its notebook's kernel; shut them all down after it (frees the model's memory)."""
    yield
    if "lab_server" in request.fixturenames:
        server = request.getfixturevalue("lab_server")
        for kernel in server.api("/api/kernels") or []:
            server.api(f"/api/kernels/{kernel['id']}", method="DELETE")


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run `make test-browser`, which installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright gives each launch a fresh temporary profile (--user-data-dir).
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        with contextlib.suppress(Exception):  # the report matters more than the screenshot
            save_screenshot(page, f"{request.node.name}_FAILED")
    context.close()


@pytest.fixture(scope="session")
def wrapper():
    """The library itself, in the test process: the expected values come from here."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from anee_lite import ANEEConfig, ANEEWrapper

    return ANEEWrapper(ANEEConfig(model_name=MODEL))


def save_screenshot(page, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    _screenshots.append(path)
    print(f"screenshot: {path}")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def pytest_terminal_summary(terminalreporter):
    if _screenshots:
        terminalreporter.section("browser screenshots")
        for path in _screenshots:
            terminalreporter.write_line(str(path))
