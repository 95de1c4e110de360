"""``matcalc serve``: the playground's answers, its limits, and the page in a real browser
(headless Chromium through Selenium; skipped, saying why, where no browser is installed)."""

from __future__ import annotations

import json
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import matcalc
from matcalc.applications.playground import MAX_BODY, Worker, answer, examples, make_server

MLP = (Path(__file__).resolve().parent.parent / "examples" / "mlp.mc").read_text()
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def test_each_view_answers_the_readme_mlp() -> None:
    wrt = ["W1", "b1", "W2", "b2"]
    found = answer({"view": "variables", "source": MLP})
    assert found["variables"] == ["X", "Y", "W1", "b1", "W2", "b2"]
    derivative = answer({"view": "derivative", "source": MLP, "wrt": ["W1"]})
    assert derivative["text"].startswith("∂L/∂W1 = Xᵀ")
    assert derivative["math"][0].startswith("<math") and "<mi>W</mi>" in derivative["math"][0]
    steps = answer({"view": "steps", "source": MLP, "wrt": wrt})
    assert all(f"δ{k}" in steps["text"] for k in (1, 2, 3))
    code = answer({"view": "numpy", "source": MLP, "wrt": wrt})["code"]
    assert "def value_and_grad(" in code
    check = answer({"view": "check", "source": MLP, "wrt": wrt})
    assert check["passed"] and "PASS" in check["text"]
    assert "Var(W)        = 2/n" in answer({"view": "init", "activation": "relu"})["text"]
    assert "dZ1 = X dW1" in answer({"view": "differential", "source": MLP, "wrt": ["W1"]})["text"]


def test_errors_are_the_command_lines_paragraph_with_its_caret() -> None:
    wrong = answer({"view": "derivative", "source": "x: [n]; A: [m, m]\nf = x @ A @ x",
                    "wrt": ["x"]})
    assert not wrong["ok"] and "do not align" in wrong["error"] and "^" in wrong["error"]
    assert "tick at least one" in answer({"view": "derivative", "source": MLP})["error"]
    assert "unknown view" in answer({"view": "eval", "source": MLP})["error"]
    huge = answer({"view": "check", "source": "x: [100000]; A: [100000, 100000]; f = x @ A @ x",
                   "wrt": ["x"]})
    assert not huge["ok"] and "more than the 4 GB matcalc allows" in huge["error"]


def test_a_derivation_past_the_time_limit_stops_its_worker_and_the_next_one_answers() -> None:
    worker = Worker(seconds=0.01)              # too short even to start: the limit applies
    try:
        result = worker.ask({"view": "variables", "source": MLP})
        assert not result["ok"] and "no answer within 0.01 s" in result["error"]
        worker.seconds = 60
        assert worker.ask({"view": "variables", "source": MLP})["ok"]
    finally:
        worker.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    server, worker = make_server(port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    worker.close()


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/api", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_server_refuses_large_and_malformed_bodies(server: str) -> None:
    status, reply = post(server, b"x" * (MAX_BODY + 1))
    assert status == 413 and "100 kB" in reply["error"]
    assert post(server, b"not json")[0] == 400
    assert post(server, b"[" * 30_000 + b"]" * 30_000)[0] == 400     # RecursionError in json
    status, reply = post(server, json.dumps({"view": "derivative", "source": MLP,
                                             "wrt": ["b2"]}).encode())
    assert status == 200 and reply["text"].startswith("∂L/∂b2 = sum(softmax(Z2) − Y")
    with urllib.request.urlopen(server + "/examples", timeout=10) as response:
        assert json.loads(response.read()) == examples()


def browser():
    """Headless Chromium driven by Selenium, or a skip naming what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="Selenium is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("no Chromium and chromedriver on this machine (Debian: apt install "
                    "chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    service = webdriver.chrome.service.Service(driver_path)
    return webdriver.Chrome(options=options, service=service)


def test_the_page_in_a_real_browser(server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver = browser()
    wait = WebDriverWait(driver, 60)
    try:
        driver.get(server + "/")
        editor = driver.find_element(By.ID, "source")
        editor.send_keys(MLP)
        wait.until(lambda d: d.find_elements(By.ID, "wrt-W1"))
        driver.find_element(By.ID, "wrt-W1").click()
        wait.until(lambda d: "W" in d.find_element(By.ID, "math").get_attribute("innerHTML"))
        math = driver.find_element(By.ID, "math").get_attribute("innerHTML")
        assert "<math" in math and "<mi>W</mi>" in math and "<mi>X</mi>" in math
        driver.find_element(By.CSS_SELECTOR, "button[data-view=steps]").click()
        wait.until(lambda d: "δ3" in d.find_element(By.ID, "text").text)
        assert all(f"δ{k}" in driver.find_element(By.ID, "text").text for k in (1, 2, 3))
        driver.find_element(By.CSS_SELECTOR, "button[data-view=numpy]").click()
        wait.until(lambda d: d.find_element(By.ID, "copy").get_attribute("data-code"))
        code = driver.find_element(By.ID, "copy").get_attribute("data-code")
        namespace: dict = {}
        exec(compile(code, "<copied>", "exec"), namespace)   # the copy button's code runs
        rng = np.random.default_rng(0)
        arrays = {"X": rng.normal(size=(4, 3)), "Y": np.eye(2)[[0, 1, 1, 0]],
                  "W1": rng.normal(size=(3, 5)), "b1": np.zeros(5),
                  "W2": rng.normal(size=(5, 2)), "b2": np.zeros(2)}
        value, grads = namespace["value_and_grad"](**arrays)
        assert np.isfinite(value) and grads["W1"].shape == (3, 5)
        ARTIFACTS.mkdir(exist_ok=True)
        driver.find_element(By.CSS_SELECTOR, "button[data-view=derivative]").click()
        wait.until(lambda d: d.find_element(By.ID, "math").get_attribute("innerHTML"))
        driver.save_screenshot(str(ARTIFACTS / "playground.png"))
        editor.clear()
        editor.send_keys("x: [n]; A: [m, m]\nf = x @ A @ x")
        wait.until(lambda d: "do not align" in d.find_element(By.ID, "error").text)
        error = driver.find_element(By.ID, "error").text
        assert "^" in error and "line 2" in error
    finally:
        driver.quit()


def test_the_tour_notebook_runs_and_its_magics_show_typeset_results() -> None:
    """examples/tour.ipynb, each code cell run in an IPython shell: no error, and the
    %%matcalc derive cells return Derivations that display as MathML and LaTeX."""
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    pytest.importorskip("IPython", reason="IPython is not installed")
    from IPython.core.interactiveshell import InteractiveShell
    notebook = nbformat.read(Path(__file__).resolve().parent.parent / "examples" / "tour.ipynb",
                             as_version=4)
    shell = InteractiveShell.instance()
    results = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            outcome = shell.run_cell(cell.source, store_history=False)
            assert outcome.success, (cell.source, outcome.error_in_exec)
            results.append(outcome.result)
    shown = [r for r in results if isinstance(r, matcalc.Derivation)]
    assert len(shown) >= 4
    assert all(r._repr_html_().startswith("<div class='matcalc'><math") for r in shown)
    logistic = next(r for r in shown if "∂L/∂w" in r.text())    # the book's BCE gradient
    assert "∂L/∂w = Xᵀ (p − y) / N   [D]" in logistic.text()
    assert re.findall(r"<mi>(\w)</mi>", logistic._repr_html_())[:6] == list("LwXpyN")
    assert shown[0]._repr_latex_().startswith("$$\\begin{aligned}\\delta_{1}")


def test_a_newer_request_stops_a_slow_one_instead_of_waiting_behind_it() -> None:
    """The page has moved on: the slow answer is dropped, and the new one comes at once."""
    import time
    slow = "x: [n]\nL = sum(" + " * ".join(f"sin(x + {k})" for k in range(300)) + ")"
    worker = Worker(seconds=60)
    try:
        assert worker.ask({"view": "variables", "source": MLP})["ok"]   # started and warm
        answers: list[dict] = []
        thread = threading.Thread(target=lambda: answers.append(
            worker.ask({"view": "hessian", "source": slow, "wrt": ["x"]})))
        thread.start()
        while not worker.busy:
            time.sleep(0.01)
        started = time.perf_counter()
        fresh = worker.ask({"view": "variables", "source": MLP})
        thread.join()
        assert fresh["ok"] and time.perf_counter() - started < 20
        assert answers[0].get("superseded")
    finally:
        worker.close()


def test_the_api_refuses_what_is_not_a_list_of_names() -> None:
    assert "must be a list" in answer({"view": "derivative", "source": MLP, "wrt": "W1"})["error"]
    assert "must be a list" in answer({"view": "derivative", "source": MLP,
                                       "wrt": {"W1": 1}})["error"]
    twice = answer({"view": "derivative", "source": MLP, "wrt": ["W1", "W1"]})["text"]
    assert twice.count("∂L/∂W1") == 1
    hess = answer({"view": "hessian", "source": "x: [n]; v: [n]; v1: [n]\nsum(x * v * v1)",
                   "wrt": ["x"]})
    assert hess["ok"]
    assert "one variable" in answer({"view": "hessian", "source": MLP,
                                     "wrt": ["W1", "W2"]})["error"]


def test_a_worker_killed_before_the_request_is_sent_answers_superseded() -> None:
    """The newer request may stop the worker between the older one's start and its send."""
    worker = Worker(seconds=60)
    try:
        worker.process.kill()
        worker.process.join()
        assert worker.answer_within({"view": "variables", "source": MLP}).get("superseded")
        assert worker.ask({"view": "variables", "source": MLP})["ok"]     # restarted
    finally:
        worker.close()
