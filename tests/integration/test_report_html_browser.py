"""The HTML report in a real browser: `deploykit report` renders a hand-built results table (no model needed),
headless Chromium (Debian's package) opens the page, and the test asserts that it loads with no console
error, CSP violation or script exception, that every plot is laid out with a real size, and that a screenshot
of the page and of each plot is not blank.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (NUL-separated JSON on file
descriptors 3 and 4: no websocket client needed). A control page with a blocked external image proves the
harness sees console errors. Skipped, with the reason, where Chromium is absent.
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from deploykit.cli import cli
from deploykit.studyreport.plots import PLOT_NAMES
from tests.results_tables import EVIL, contract_table, write_table

pytestmark = pytest.mark.slow

CHROMIUM = next((p for p in (os.environ.get("DEPLOYKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                             shutil.which("chromium-browser"), shutil.which("google-chrome")) if p and
                 Path(p).is_file()), None)


class Browser:
    """Headless Chromium with the DevTools protocol on a pipe; one page (target) attached in flat mode."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900):
        r_cmd, self._w_cmd = os.pipe()  # we write commands -> Chromium reads fd 3
        self._r_evt, w_evt = os.pipe()  # Chromium writes fd 4 -> we read

        def child_fds():
            a, b = os.dup(r_cmd), os.dup(w_evt)  # above 4, so that dup2 cannot clobber its own source
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--window-size={width},{height}", "about:blank"],
            preexec_fn=child_fds, close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        os.close(r_cmd)
        os.close(w_evt)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.session = None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def _read(self, pred, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "method" in msg:
                    self.events.append(msg)
                if pred(msg):
                    return msg
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._r_evt], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self._r_evt, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe: "
                                       + (self.proc.stderr.read(4000).decode(errors="replace")
                                          if self.proc.poll() is not None else "still running"))
                self._buf += chunk

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._w_cmd, json.dumps(msg).encode() + b"\0")
        mid = self._id
        reply = self._read(lambda m: m.get("id") == mid, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str, timeout: float = 60) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self._read(lambda m: m.get("method") == "Page.loadEventFired", timeout)
        self.call("Runtime.evaluate", expression="new Promise(r => requestAnimationFrame(() => r(1)))",
                  awaitPromise=True)

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, failed loads, CSP violations and uncaught exceptions seen since the last open()."""
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"{p['entry'].get('source')}: {p['entry'].get('text')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                out.append("exception: " + p["exceptionDetails"].get("text", ""))
        return out

    def screenshot(self, clip: dict | None = None) -> np.ndarray:
        params = {"format": "png", "captureBeyondViewport": True}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def close(self) -> None:
        try:
            self._id += 1
            os.write(self._w_cmd, json.dumps({"id": self._id, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._w_cmd)
            os.close(self._r_evt)
            self.proc.stderr.close()


def distinct_colours(img: np.ndarray) -> int:
    flat = img.reshape(-1, 3).astype(np.uint32)
    return int(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]).size)


def ink_share(img: np.ndarray) -> float:
    """The share of pixels that are not (near) white."""
    return float(np.mean(img.min(axis=2) < 235))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        print("SKIPPED: Chromium is not installed (apt-get install chromium, or set DEPLOYKIT_CHROMIUM)")
        pytest.skip("Chromium is not installed (apt-get install chromium, or set DEPLOYKIT_CHROMIUM)")
    pytest.importorskip("PIL", reason="Pillow reads the screenshots")
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    from click.testing import CliRunner

    folder = tmp_path_factory.mktemp("sweep")
    write_table(contract_table(folder, serving=True), folder)
    out = folder / "report.html"
    res = CliRunner().invoke(cli, ["report", str(folder), "-o", str(out)])
    assert res.exit_code == 0, res.output + str(res.exception)
    return out


def test_the_harness_sees_console_errors(browser, tmp_path):
    """Control: a page whose external image the page's own CSP blocks, and a console.error, are both caught."""
    from deploykit.studyreport.html import CSP

    page = tmp_path / "control.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}">'
                    '</head><body><p>x</p><img src="https://example.invalid/x.png"></body></html>')
    browser.open(page.as_uri())
    errs = browser.errors()
    assert any("example.invalid" in e for e in errs), errs


def test_report_loads_without_errors_and_the_plots_render(browser, report_page, tmp_path):
    browser.open(report_page.as_uri())
    assert browser.errors() == []
    assert browser.evaluate("document.title").startswith("deploykit report")
    assert browser.evaluate("document.querySelectorAll('script').length") == 0
    # the hostile model name is shown as text, not run as markup
    assert EVIL in browser.evaluate("document.body.innerText")
    boxes = browser.evaluate("""Array.from(document.querySelectorAll('figure svg')).map(s => {
        const r = s.getBoundingClientRect();
        return {id: s.id, x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })""")
    assert sorted(b["id"] for b in boxes) == sorted(f"svg-{n}" for n in PLOT_NAMES)
    for b in boxes:
        assert b["width"] > 300 and b["height"] > 150, b
        shot = browser.screenshot({k: b[k] for k in ("x", "y", "width", "height")})
        assert distinct_colours(shot) > 50 and ink_share(shot) > 0.02, (b["id"], distinct_colours(shot))

    page = browser.screenshot()
    from PIL import Image

    Image.fromarray(page).save(tmp_path / "report.png")
    height = browser.evaluate("document.documentElement.scrollHeight")
    assert page.shape[0] >= min(height, 16000) - 2 and page.shape[1] >= 1000
    assert distinct_colours(page) > 200, distinct_colours(page)
    assert ink_share(page) > 0.03
    print(f"screenshot {page.shape[1]}x{page.shape[0]}: {distinct_colours(page)} colours, "
          f"{100 * ink_share(page):.1f}% ink -> {tmp_path / 'report.png'}")


@pytest.fixture(scope="module")
def four_cell_page(tmp_path_factory):
    """A small sweep as a new user runs it: two models on two targets, fp32, one resolution and batch."""
    from click.testing import CliRunner

    folder = tmp_path_factory.mktemp("four")
    df = contract_table(folder, families=("cnn", "vit"), evil=False)
    df = df[(df["status"] == "ok") & (df["precision"] == "fp32") & (df["resolution"] == 224) & (df["batch"] == 1)]
    assert len(df) == 4
    write_table(df, folder)
    res = CliRunner().invoke(cli, ["report", str(folder), "--n-boot", "100"])
    assert res.exit_code == 0, res.output + str(res.exception)
    return folder / "report.html"


def no_sideways_scroll(browser) -> None:
    assert browser.evaluate("document.documentElement.scrollWidth") <= \
        browser.evaluate("document.documentElement.clientWidth")
    wide = browser.evaluate("Array.from(document.querySelectorAll('.scroll')).map(d => d.scrollWidth - d.clientWidth)")
    assert max(wide, default=0) <= 0, wide  # no table scrolls sideways at 1280 px


def test_a_small_sweep_leads_with_the_answer_at_1280_px(browser, four_cell_page, tmp_path):
    browser.open(four_cell_page.as_uri())
    assert browser.errors() == []
    no_sideways_scroll(browser)
    ids = browser.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.id)")
    assert ids[0] == "summary" and ids[-2:] == ["not-shown", "methods"], ids
    assert "exponents" not in ids and "int8" not in ids and "serving" not in ids  # sections without data
    text = browser.evaluate("document.body.innerText")
    assert "Not drawn" not in text.split("Not shown for this table")[0]  # no notice before the answer
    box = browser.evaluate("""(() => { const r = document.querySelector('#svg-latency_summary')
        .getBoundingClientRect(); return {x: r.left + scrollX, y: r.top + scrollY, width: r.width,
        height: r.height}; })()""")
    assert box["y"] < 900 and box["width"] > 500, box  # the summary chart is on the first screen
    shot = browser.screenshot({k: box[k] for k in ("x", "y", "width", "height")})
    assert distinct_colours(shot) > 50 and ink_share(shot) > 0.05
    ticks = browser.evaluate("Array.from(document.querySelectorAll('svg text')).map(t => t.textContent)")
    assert not [t for t in ticks if "×10" in t or "10^" in t], ticks  # log ticks as plain numbers


def test_the_study_page_does_not_scroll_sideways_at_1280_px(browser, report_page):
    browser.open(report_page.as_uri())
    no_sideways_scroll(browser)
    ids = browser.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.id)")
    assert ids[0] == "summary" and ids.index("results") < ids.index("methods")
