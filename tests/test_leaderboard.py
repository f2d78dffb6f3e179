"""The leaderboard: exact numbers in the right cells, escaping, skipped files, and a real browser."""

import base64
import dataclasses
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch

from benchmark.config import resolve
from benchmark.engine.saving import write_results
from benchmark.results.store import Measurement
from benchmark.stats.intervals import wilson_interval
from benchmark_leaderboard.render import render_csv, render_html
from benchmark_leaderboard.report import build_report, write_report
from conftest import BENCHMARK_CLI, cli_env

EVIL = "<script>alert(1)</script>"


def fake_run(out: Path, method: str, seed: int, clean: float, robust: list[float], flags=(), name=None,
             overrides=()) -> Path:
    """A results file as `benchmark run` writes it, with chosen numbers."""
    config = resolve(method, "cmnist", seed=seed, overrides=overrides)
    if name:
        config = dataclasses.replace(config, method=name)
    rows = [Measurement("accuracy", "accuracy", clean, 100, eval_set="test")]
    rows += [Measurement("robustness", "robust_accuracy", v, 64, attack="pgd", region="right_digit", norm="linf",
                         eps=1.0, steps=10, step_size=0.0156, attack_seed=i, area_fraction=0.5, flags=tuple(flags))
             for i, v in enumerate(robust)]
    rows += [Measurement("robustness", "robust_accuracy", v / 2, 64, attack="pgd", region="full", norm="linf",
                         eps=0.1, steps=10, step_size=0.0156, attack_seed=i, area_fraction=1.0)
             for i, v in enumerate(robust)]
    created = datetime(2026, 11, 22, 12, seed, tzinfo=timezone.utc)
    stem = f"{config.method}_{seed}".replace("<", "").replace(">", "").replace("/", "")
    return write_results(rows, config, created, torch.device("cpu"), "fixture", out / f"{stem}.parquet",
                         train_commit="fixture")


@pytest.fixture()
def results(tmp_path):
    out = tmp_path / "results"
    a0 = fake_run(out, "vanilla", 0, 0.9, [0.5, 0.7])
    fake_run(out, "vanilla", 1, 0.8, [0.4, 0.4], flags=("robust_rises_with_eps",))
    fake_run(out, "weight_decay", 0, 0.7, [0.8])
    fake_run(out, "hsplid", 0, 0.6, [0.1], name=EVIL)
    shutil.copy(a0, out / "copied_from_another_machine.parquet")  # the same run twice
    (out / "broken.parquet").write_bytes(b"PAR1 not really")
    return out


def test_report_puts_the_expected_numbers_in_the_expected_places(results):
    boards, problems, _ = build_report([results])
    assert len(problems) == 1 and "broken.parquet" in problems[0]
    (board,) = boards
    assert [e.method for e in board.entries] == ["weight_decay", "vanilla", EVIL]  # by pgd right_digit 1
    assert [(e.rank, e.tied) for e in board.entries] == [(1, True), (1, True), (3, False)]
    vanilla = board.entries[1]
    assert vanilla.seeds == [0, 1]  # the copied file is not a third seed
    cell = vanilla.cells["pgd right_digit 1"]
    assert (round(cell.mean, 12), cell.seeds, cell.attack_seeds, cell.over) == (0.5, 2, 2, "seeds and samples")
    assert cell.std == pytest.approx(0.1 * 2**0.5)  # runs: 0.6 and 0.4 (attack seeds averaged)
    half = 12.7062047362 * cell.std / 2**0.5  # Student t, 1 degree of freedom, wider than Wilson, not clipped
    assert (cell.low, cell.high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert vanilla.cells["clean test"].mean == pytest.approx(0.85)
    assert vanilla.cells["pgd right_digit 1"].flags == ["robust_rises_with_eps"]
    wd = board.entries[0].cells["pgd right_digit 1"]  # one seed, one attack seed: Wilson over 64 samples
    assert (wd.over, wd.low, wd.high) == ("samples", *map(pytest.approx, wilson_interval(51, 64)))
    d = board.entries[0].comparisons["pgd right_digit 1"]  # no per-sample records: seed means, one shared seed
    assert d.difference == pytest.approx(0.8 - 0.6) and not d.significant and d.seeds == 1
    csv_text = render_csv(boards)
    assert "cmnist,quick,1,True,vanilla," in csv_text and ",pgd right_digit 1,robust,robust_accuracy,0.5," in csv_text
    html = render_html(boards, problems, [str(results)], "now")
    row = html.split("<tbody>")[1].split("</tr>")[1]  # the second ranked row
    assert ">vanilla" in row and ">85.0 <span class=ci" in row and ">50.0 <span class=ci" in row
    assert "sanity flags: robust_rises_with_eps" in row
    assert "Ranked by pgd right_digit 1 (higher is better)" in html
    assert "smoke test of the pipeline" in html and "1-2 training seed(s) per configuration" in html


def test_a_quick_board_with_a_changed_schedule_names_it_instead_of_calling_itself_a_smoke_test(tmp_path):
    longer = ["train.epochs=10", "train.lr=1e-4"]
    for seed in (0, 1):
        fake_run(tmp_path, "vanilla", seed, 0.9, [0.5], overrides=longer)
        fake_run(tmp_path, "hsplid", seed, 0.9, [0.5 + seed / 10], overrides=[*longer, "method.warmup_epochs=0"])
    (board,) = build_report([tmp_path])[0]
    assert board.caution == ("Runs of the quick profile with its training changed (train.epochs=10, train.lr=0.0001): "
                             "the numbers hold for that schedule; read the intervals; no difference on the ranking "
                             "number is significant.")


def test_strings_from_results_are_escaped_and_bad_files_reported(results):
    boards, problems, _ = build_report([results])
    html = render_html(boards, problems, [str(results)], "now")
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Skipped files" in html and "broken.parquet" in html
    assert html.count("<script>") == 1  # only the page's own sorting script


def test_report_command_writes_three_files_and_reports_skipped_ones(results, tmp_path):
    out = tmp_path / "site" / "board.html"
    proc = subprocess.run([*BENCHMARK_CLI, "report", "--results", str(results), "--out", str(out)],
                          capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stderr and "broken.parquet" in proc.stderr
    assert out.read_text().startswith("<!doctype html>")
    assert "| 1= | weight_decay |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".csv").read_text().startswith("dataset,profile,rank,tied,method")
    bad = subprocess.run([*BENCHMARK_CLI, "report", "--results", "/missing"], capture_output=True, text=True,
                         env=cli_env(), timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "does not exist" in bad.stderr


# -- a real browser ---------------------------------------------------------------------------
class WebDriver:
    """The few W3C WebDriver calls the test needs, over chromedriver's HTTP API (no client library)."""

    def __init__(self, chromedriver: str, chromium: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen([chromedriver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                self.call("GET", "/status")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        caps = {"browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {"binary": chromium, "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1000"]}}
        self.session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]

    def call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def __call__(self, method: str, path: str, body: dict | None = None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def script(self, source: str):
        return self("POST", "/execute/sync", {"script": source, "args": []})

    def click(self, css: str) -> None:
        element = self("POST", "/element", {"using": "css selector", "value": css})
        self("POST", f"/element/{next(iter(element.values()))}/click", {})

    def close(self) -> None:
        try:
            self("DELETE", "")
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


def browser_binaries():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver;"
                    " .ci/run installs them)")
    return driver, chromium


def test_page_opens_in_headless_chromium_without_errors_and_sorts_on_click(results, tmp_path):
    driver_path, chromium = browser_binaries()
    out = tmp_path / "board.html"
    write_report([results], out, "now")
    browser = WebDriver(driver_path, chromium)
    try:
        browser("POST", "/url", {"url": out.as_uri()})
        methods = "return Array.from(document.querySelectorAll('#t0 tbody tr')).map(r => r.cells[1].textContent)"
        assert browser.script(methods) == ["weight_decay", "vanilla", EVIL]
        browser.click("#t0 thead th:nth-child(2)")  # method, text: ascending
        assert browser.script(methods) == sorted(["weight_decay", "vanilla", EVIL])
        header = browser.script("return Array.from(document.querySelectorAll('#t0 thead th'))"
                                ".findIndex(h => h.textContent === 'clean test') + 1")
        browser.click(f"#t0 thead th:nth-child({header})")  # clean accuracy, numeric: descending
        assert browser.script(methods) == ["vanilla", "weight_decay", EVIL]  # 85, 70, 60
        browser.click(f"#t0 thead th:nth-child({header})")  # and back: ascending
        assert browser.script(methods) == [EVIL, "weight_decay", "vanilla"]
        assert browser.script("return document.querySelectorAll('svg polyline').length") >= 3
        png = base64.b64decode(browser("GET", "/screenshot"))
        (tmp_path / "leaderboard.png").write_bytes(png)
        assert png[:4] == b"\x89PNG" and len(png) > 10_000
        logs = browser("POST", "/se/log", {"type": "browser"})
        assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
    finally:
        browser.close()


def test_a_single_seed_board_over_ten_thousand_samples_gives_binomtest_s_mcnemar_p(tmp_path, capsys):
    """Two methods, one seed, 10,000 shared samples, over 7,000 discordant pairs: the exact McNemar
    p-value in `benchmark results`' numbers and the report's CSV is scipy's binomial test."""
    import csv
    import io

    import numpy as np
    from scipy.stats import binomtest

    from benchmark.results.records import Records
    from conftest import cli_in_process

    rng = np.random.default_rng(0)
    samples = np.arange(10_000)
    u = rng.random(10_000)
    outcomes = {"vanilla": u < 0.5, "weight_decay": u > 0.22}  # they disagree where u < 0.22 or u > 0.5
    for method, correct in outcomes.items():
        config = resolve(method, "cmnist", seed=0)
        row = Measurement.of_records("accuracy", "accuracy", Records.of(samples, correct.astype(float)),
                                     eval_set="test")
        write_results([row], config, datetime(2026, 12, 6, tzinfo=timezone.utc), torch.device("cpu"), "fixture",
                      tmp_path / f"{method}.parquet", train_commit="fixture")
    m, r = outcomes["weight_decay"], outcomes["vanilla"]
    b, c = int((m & ~r).sum()), int((~m & r).sum())
    assert b + c >= 7_000  # 72 % of the 10,000 pairs disagree
    expected = binomtest(b, b + c, 0.5).pvalue
    code, out, _ = cli_in_process(capsys, "results", "--out", str(tmp_path))
    assert code == 0 and "difference to vanilla" in out
    paths, problems = write_report([tmp_path], tmp_path / "lb.html", "now")
    rows = [row for row in csv.DictReader(io.StringIO((tmp_path / "lb.csv").read_text()))
            if row["method"] == "weight_decay" and row["column"] == "clean test"]
    assert float(rows[0]["p_mcnemar"]) == pytest.approx(expected, rel=1e-9)
    assert "exact McNemar p" in (tmp_path / "lb.html").read_text()


def test_reference_can_be_a_configuration_label_or_a_config_key_prefix(tmp_path, capsys):
    from conftest import cli_in_process

    fake_run(tmp_path, "vanilla", 0, 0.9, [0.5])
    fake_run(tmp_path, "hsplid", 0, 0.9, [0.3]).rename(tmp_path / "hsplid_defaults.parquet")
    other = fake_run(tmp_path, "hsplid", 0, 0.8, [0.7], overrides=["method.lambda_s=0.5"])
    key = json.loads(pq_config_key(other))
    for reference in ("hsplid lambda_s=0.5", key[:6]):
        (board,) = build_report([tmp_path], reference=reference)[0]
        assert board.reference == "hsplid lambda_s=0.5"
        compared = {e.point or e.method: e.comparisons["pgd right_digit 1"].difference for e in board.entries
                    if e.comparisons}
        assert compared == {"vanilla": pytest.approx(0.5 - 0.7), "hsplid": pytest.approx(0.3 - 0.7)}
    (board,) = build_report([tmp_path], reference="hsplid")[0]
    assert board.reference == "hsplid"  # a method name: its configuration at the defaults
    code, out, _ = cli_in_process(capsys, "results", "--out", str(tmp_path), "--reference", "hsplid lambda_s=0.5")
    assert code == 0 and "difference to hsplid" in out and "lambda_s=0.5" in out
    assert "│  -40.0 │   -20.0 │" in out  # hsplid and vanilla against it, in points


def pq_config_key(path: Path) -> str:
    import pyarrow.parquet as pq

    return json.dumps(pq.read_table(path, columns=["config_key"]).column(0)[0].as_py())


def test_a_plugin_suite_s_rows_show_in_results_and_on_the_board(tmp_path, capsys):
    from benchmark.results.columns import column_of
    from conftest import cli_in_process

    row = {"suite": "mysuite", "metric": "accuracy", "eval_set": "test", "attack": None, "region": None,
           "explainer": None, "eps": float("nan"), "extra": "{}"}
    column = column_of(row)
    assert column is not None and column.key == "clean accuracy (mysuite) test" and column.kind == "clean"
    config = resolve("vanilla", "cmnist", seed=0)
    rows = [Measurement("accuracy", "accuracy", 0.9, 100, eval_set="test"),
            Measurement("mysuite", "accuracy", 0.42, 100, eval_set="test")]
    write_results(rows, config, datetime(2026, 12, 6, tzinfo=timezone.utc), torch.device("cpu"), "fixture",
                  tmp_path / "run.parquet", train_commit="fixture")
    (board,) = build_report([tmp_path])[0]
    assert "clean accuracy (mysuite) test" in {c.key for c in board.columns}
    code, out, _ = cli_in_process(capsys, "results", "--out", str(tmp_path))
    assert code == 0 and "clean accuracy (mysuite) test" in out and "42.0" in out


def _report_bytes(results: Path, out: Path) -> list[bytes]:
    paths, _ = write_report([results], out / "board.html", "2026-12-06 00:00 UTC")
    return [p.read_bytes() for p in paths]


def _change_the_registries(monkeypatch, request) -> None:
    """Another ranking for C-MNIST, another label for robust accuracy, another default schedule
    for every method: what a later version of the code might say."""
    from benchmark.dataset import Ranking
    from benchmark.registry import DATASETS, METHODS, METRICS

    monkeypatch.setattr(DATASETS.get("cmnist"), "ranking", Ranking("accuracy", label="clean"))
    monkeypatch.setattr(METRICS.get("robust_accuracy"), "label", "changed label")
    for name in ("vanilla", "weight_decay", "hsplid"):
        monkeypatch.setattr(METHODS.get(name), "defaults",
                            classmethod(lambda cls, dataset, profile: {"train": {"lr": 0.5, "epochs": 9}}))
    from benchmark.results import context
    context.legacy.cache_clear()
    request.addfinalizer(context.legacy.cache_clear)  # what was read under the change goes with it


def test_a_board_reads_only_its_files_and_stays_byte_identical_when_registry_defaults_change(results, tmp_path,
                                                                                           monkeypatch, request):
    before = _report_bytes(results, tmp_path / "before")
    _change_the_registries(monkeypatch, request)
    assert _report_bytes(results, tmp_path / "after") == before


def test_files_written_before_the_context_are_read_through_today_s_registries(results, tmp_path, monkeypatch,
                                                                               request):
    """The control of the test above: without the file's context the same change shows."""
    import pyarrow.parquet as pq

    for path in results.glob("*.parquet"):
        if path.name != "broken.parquet":
            pq.write_table(pq.read_table(path).replace_schema_metadata(None), path)
    before = _report_bytes(results, tmp_path / "before")
    assert b"Ranked by pgd right_digit 1" in before[0]
    _change_the_registries(monkeypatch, request)
    after = _report_bytes(results, tmp_path / "after")
    assert after != before and b"Ranked by clean" in after[0] and b"changed label" in after[0]


def test_a_page_names_its_results_folder_as_given_never_the_machine_s_absolute_path(results, tmp_path, monkeypatch):
    monkeypatch.chdir(results.parent)
    write_report([Path("results")], Path("page.html"), "2026-12-06 00:00 UTC")
    page = Path("page.html").read_text()
    assert "result file(s) in results." in page and str(tmp_path) not in page
