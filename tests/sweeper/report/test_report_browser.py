"""The report in a real browser: headless Chromium driven by chromedriver over the W3C
WebDriver HTTP API (urllib only, loopback only).

What is checked, and how:
- images: every <img> is complete with naturalWidth > 0 (read from the DOM);
- errors: chromedriver's browser log (``goog:loggingPrefs``; any SEVERE entry fails),
  plus a capture installed before the page's own script via the DevTools command
  Page.addScriptToEvaluateOnNewDocument: window 'error' events (script errors and
  failed resource loads), unhandled rejections, console.error calls,
  Content-Security-Policy violations and alert() calls;
- sorting: a real click on a header reorders the rows into sorted order;
- escaping: a study named ``<script>alert(1)</script>`` shows as text and runs nothing;
- the verdict line is there, and the trials table scrolls inside its own box;
- every figure of the report, as built: no legend over data points, whole-number ticks on
  axes that count trials or epochs, no overlapping labels (``sweeper.report.layout``).
The page is opened from file:// and from a static HTTP server on 127.0.0.1 (the driver is
``tests/browser.py``).
A screenshot goes to test-artifacts/report.png (and the whole page to report-full.png).
"""

from __future__ import annotations

import base64
import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from sweeper.report import write_report
from tests.browser import CHROMEDRIVER, CHROMIUM, WebDriver, WebDriverError, headless_chromium
from sweeper.report.layout import fractional_count_ticks, label_overlaps, layout_problems, legend_overlaps, mark_count_axis

EVIL_NAME = "<script>alert(1)</script>"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
    pytest.mark.skipif(
        not (CHROMEDRIVER.exists() or shutil.which("chromedriver")),
        reason="needs chromedriver (Debian package chromium-driver)",
    ),
]

CAPTURE_JS = """
window.__reportErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) { window.__reportErrors.push('resource failed: ' + (t.src || t.href)); }
  else { window.__reportErrors.push('error: ' + e.message); }
}, true);
window.addEventListener('unhandledrejection', function (e) { window.__reportErrors.push('rejection: ' + e.reason); });
document.addEventListener('securitypolicyviolation', function (e) {
  window.__reportErrors.push('csp: ' + e.violatedDirective + ' ' + e.blockedURI);
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__reportErrors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
})();
window.alert = function (m) { window.__reportErrors.push('alert: ' + m); };
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        with headless_chromium(tmp_path_factory.mktemp("chromium"), on_new_document=CAPTURE_JS) as driver:
            yield driver
    except WebDriverError as exc:
        pytest.fail(str(exc))


BUILT_FIGURES: dict[str, Figure] = {}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import synthetic

    root = tmp_path_factory.mktemp("browser-report")
    store = synthetic.make_store(root / "store", 72, name=EVIL_NAME, failed=0.08, running=2, state="running")
    return write_report(store, root / "report", on_figure=BUILT_FIGURES.__setitem__)


def open_page(browser: WebDriver, url: str) -> None:
    browser.browser_log()  # drain entries from earlier pages
    browser.open(url)


def page_problems(browser: WebDriver) -> list[str]:
    captured = browser.run("return window.__reportErrors")
    assert isinstance(captured, list), "the error capture was not installed before the page ran"
    problems = list(captured)
    log = browser.browser_log()
    if log is not None:
        problems += [f"browser log {e.get('level')}: {e.get('message')}" for e in log if e.get("level") == "SEVERE"]
    return problems


def check_images(browser: WebDriver) -> list[dict]:
    images = browser.run(
        "return Array.from(document.images).map(function (i) {"
        " return {src: i.currentSrc || i.src, complete: i.complete, width: i.naturalWidth}; })"
    )
    assert len(images) >= 5, images
    broken = [i for i in images if not i["complete"] or i["width"] <= 0]
    assert not broken, f"images that did not load: {broken}"
    return images


def column_values(browser: WebDriver, table: str, column: str) -> list[str]:
    return browser.run(
        "var t = document.getElementById(arguments[0]), name = arguments[1];"
        "var i = Array.from(t.tHead.rows[0].cells).findIndex(function (c) {"
        " return c.getAttribute('data-col') === name; });"
        "if (i < 0) { throw new Error('no column ' + name); }"
        "return Array.from(t.tBodies[0].rows).map(function (r) {"
        " var c = r.cells[i]; var v = c.getAttribute('data-v'); return v === null ? c.textContent : v; });",
        table, column,
    )


def _numeric_sorted(values: list[str], descending: bool = False) -> bool:
    present = [float(v) for v in values if v != ""]
    empties_last = all(v == "" for v in values[len(present):])
    return empties_last and present == sorted(present, reverse=descending)


def test_report_from_file_url(browser, report, request):
    open_page(browser, report.as_uri())

    check_images(browser)

    title = browser.run("return document.title")
    heading = browser.run("return document.querySelector('h1').textContent")
    assert EVIL_NAME in title and EVIL_NAME in heading
    assert browser.run("return document.scripts.length") == 1
    assert "PARTIAL RESULTS" in browser.run("return document.querySelector('.banner').textContent")

    # sorting: the trials table starts in accuracy-descending order; one click sorts ascending
    before_ids = column_values(browser, "trials-table", "trial_id")
    before = column_values(browser, "trials-table", "knn_top1")
    browser.click('#trials-table thead th[data-col="knn_top1"]')
    after = column_values(browser, "trials-table", "knn_top1")
    assert column_values(browser, "trials-table", "trial_id") != before_ids, "clicking the header did not reorder rows"
    assert after != before and _numeric_sorted(after), after
    browser.click('#trials-table thead th[data-col="knn_top1"]')
    assert _numeric_sorted(column_values(browser, "trials-table", "knn_top1"), descending=True)
    # a numeric column whose values are not already in any order, then a text column
    browser.click('#trials-table thead th[data-col="train_pflops"]')
    assert _numeric_sorted(column_values(browser, "trials-table", "train_pflops"))
    browser.click('#trials-table thead th[data-col="status"]')
    statuses = column_values(browser, "trials-table", "status")
    assert statuses == sorted(statuses)
    assert browser.run(
        "return document.querySelector('#trials-table th[data-col=\"status\"]').getAttribute('aria-sort')"
    ) == "ascending"

    problems = page_problems(browser)
    assert not problems, problems

    verdict = browser.run("var v = document.getElementById('verdict'); return v ? v.textContent : null")
    assert verdict and verdict.startswith("Verdict"), verdict
    assert browser.run("return document.querySelector('.headline').contains(document.getElementById('verdict'))")
    # the wide trials table scrolls inside its box; the page itself does not scroll sideways
    box = browser.run("var w = document.getElementById('trials-table').parentNode;"
                      "return {cls: w.className, sw: w.scrollWidth, cw: w.clientWidth, sh: w.scrollHeight,"
                      " ch: w.clientHeight, overflow: getComputedStyle(w).overflow,"
                      " page: document.documentElement.scrollWidth, view: window.innerWidth}")
    assert box["cls"] == "table-wrap" and box["overflow"] == "auto", box
    assert box["sw"] > box["cw"] and box["sh"] > box["ch"], box  # more rows and columns than fit: it scrolls
    assert box["page"] <= box["view"], box

    # screenshots: the top of the page as it opens, and the whole page
    artifacts = Path(request.config.rootpath) / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    browser.run("window.scrollTo(0, 0)")
    (artifacts / "report.png").write_bytes(base64.b64decode(browser.s("GET", "/screenshot")))
    full = browser.s("POST", "/goog/cdp/execute", {
        "cmd": "Page.captureScreenshot", "params": {"format": "png", "captureBeyondViewport": True}})
    (artifacts / "report-full.png").write_bytes(base64.b64decode(full["data"]))
    assert (artifacts / "report.png").read_bytes().startswith(b"\x89PNG")


def test_report_from_a_static_web_server(browser, report):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(report.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        open_page(browser, f"http://127.0.0.1:{server.server_address[1]}/index.html")
        images = check_images(browser)
        assert all(i["src"].startswith("http://127.0.0.1:") for i in images)
        problems = page_problems(browser)
        assert not problems, problems
    finally:
        server.shutdown()
        server.server_close()


def test_the_checks_catch_a_broken_page(browser, report):
    """The image and error checks above are not vacuous: a page with a missing image and a
    script the policy blocks fails both."""
    page = report.read_text(encoding="utf-8").replace(
        "</main>", '<img src="fig_missing.png" alt="x"><script>undefinedFunction()</script></main>'
    )
    broken = report.parent / "broken.html"
    broken.write_text(page, encoding="utf-8")
    try:
        open_page(browser, broken.as_uri())
        with pytest.raises(AssertionError, match="fig_missing.png"):
            check_images(browser)
        problems = page_problems(browser)
        assert any("resource failed" in p and "fig_missing.png" in p for p in problems), problems
        assert any(p.startswith("csp: script-src") for p in problems), problems
        # the browser log channel works too (not only the injected capture)
        assert any(p.startswith("browser log SEVERE") and "fig_missing.png" in p for p in problems), problems
    finally:
        broken.unlink()


def test_no_figure_has_a_legend_over_points_fractional_count_ticks_or_overlapping_labels(report):
    assert len(BUILT_FIGURES) >= 6, sorted(BUILT_FIGURES)
    problems = {name: layout_problems(fig) for name, fig in BUILT_FIGURES.items()}
    assert not any(problems.values()), problems
    count_axes = [ax for fig in BUILT_FIGURES.values() for ax in fig.axes
                  for axis in (ax.xaxis, ax.yaxis) if axis.get_gid() == "count"]
    assert len(count_axes) >= 3  # the learning curves' epoch axes and the cost model's trial counts


def test_the_layout_checks_catch_a_bad_figure():
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.scatter([1.5, 1.5, 1.5], [1.5, 1.55, 1.6], label="points")  # the middle one under the legend
    ax.legend(loc="center")  # right over the line's middle points
    ax.set_xlim(0, 3)
    ax.set_xticks([0, 0.5, 1, 1.5, 2, 2.5, 3])
    mark_count_axis(ax.xaxis)
    ax.annotate("a label", (1, 1))
    ax.annotate("a label", (1, 1))
    assert legend_overlaps(fig) and "covers" in legend_overlaps(fig)[0]
    assert fractional_count_ticks(fig) and "0.5" in fractional_count_ticks(fig)[0]
    assert label_overlaps(fig) and "overlapping annotation" in label_overlaps(fig)[0]
