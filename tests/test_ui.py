"""The DAG through the Airflow UI in a real browser (headless Debian Chromium, driven by Selenium):
log in, open `laion_ingest`, fill the trigger form with a shard range, submit, wait for success,
and check the grid shows the mapped tasks labelled by shard. This proves the form's Params (titles,
types, values) reach the run's conf and that `map_index_template` names the mapped tasks.
Then the "LAION search" page in the UI's navigation: type a text query, see the grid of pictures,
upload an image, see its grid. Screenshots go to test-artifacts/: trigger-form.png (the filled form),
grid.png (the mapped `ingest_shard` instances, "shard 0" and "shard 1", next to the grid),
search-page.png and search-by-image.png.
On a UI timeout, the page source and a screenshot are saved there as failed-<what>.html/.png."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait
from test_clip_search import other_nouns

from laion_ingest import datasets, pipeline
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.ledger import Attempt
from laion_ingest.sample.mirror import generate_mirror
from laion_ingest.sample.server import MirrorServer

pytestmark = pytest.mark.slow  # airflow standalone, a browser or a cluster: make test-fast leaves it out

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SIZE = (1600, 1000)


@pytest.fixture(scope="module")
def airflow(ui_standalone):
    return ui_standalone


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", f"--window-size={SIZE[0]},{SIZE[1]}"):
        options.add_argument(arg)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # Selenium Manager must not go online (the paths are given anyway)
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, what: str, condition, timeout: float = 30):
    """WebDriverWait that, on timeout, saves the page for debugging and fails saying what is missing."""
    def settled(d):  # a page in the middle of navigating answers "aborted by navigation": ask again
        try:
            return condition(d)
        except WebDriverException as exc:
            if "navigat" not in (exc.msg or ""):
                raise
            return False

    try:
        return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(settled)
    except TimeoutException:
        name = "failed-" + re.sub(r"\W+", "-", what).strip("-")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{name}.html").write_text(driver.page_source)
        driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
        pytest.fail(f"UI: no {what} after {timeout} s at {driver.current_url}; see {ARTIFACTS / name}.html/.png")


def click(driver, what: str, css: str) -> None:
    wait(driver, what, EC.element_to_be_clickable((By.CSS_SELECTOR, css))).click()


def fill(driver, title: str, value) -> None:
    """Types into the trigger form's field for the Param with this title (select-all + type, as a user)."""
    xpath = f"//label[@data-part='label'][normalize-space(text())='{title}']/ancestor::div[.//input][1]//input"
    field = wait(driver, f"form field {title}", EC.element_to_be_clickable((By.XPATH, xpath)))
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value))
    assert field.get_attribute("value") == str(value), f"form field {title!r} shows {field.get_attribute('value')!r}"


def login(browser, server) -> None:
    browser.get(server.url)  # the simple auth manager's login form, unless the browser has logged in
    if browser.get_cookie("_token"):
        return
    wait(browser, "login form", EC.visibility_of_element_located((By.NAME, "username"))).send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(server.password)
    click(browser, "sign-in button", "button[type=submit]")
    wait(browser, "redirect after login", lambda d: "/auth/login" not in d.current_url)


def loaded_pictures(driver, count: int):
    """The grid's cards once `count` of them show a loaded picture, else False."""
    cards = driver.find_elements(By.CSS_SELECTOR, "#grid .hit")
    shown = driver.execute_script(
        "return [...document.querySelectorAll('#grid .hit img')].filter(i => i.complete && i.naturalWidth > 0).length")
    return cards if len(cards) == count and shown == count else False


def test_trigger_a_shard_range_from_the_ui_and_see_the_shards_in_the_grid(airflow, browser):
    server, mirror = airflow
    ARTIFACTS.mkdir(exist_ok=True)

    login(browser, server)
    browser.get(f"{server.url}/dags/laion_ingest")
    click(browser, "Trigger button", "[data-testid=trigger-dag-button]")
    conf = {"First shard": 0, "Last shard": 1, "Source URL": mirror.url, "HNSW M": 8, "HNSW ef_construction": 32}
    for title, value in conf.items():
        fill(browser, title, value)
    browser.set_window_size(SIZE[0], 2000)  # tall enough for the whole dialog in one screenshot
    browser.save_screenshot(str(ARTIFACTS / "trigger-form.png"))
    browser.set_window_size(*SIZE)
    click(browser, "form's Trigger button", "[data-testid=trigger-dag-submit]")
    wait(browser, "run page after trigger", EC.url_contains("/dags/laion_ingest/runs/"))
    # The form's "Unpause laion_ingest on trigger" (checked by default) unpauses the new, paused DAG,
    # in a request of its own that can finish after the page has moved on.
    wait(browser, "DAG unpaused by the trigger form (REST is_paused false)",
         lambda _: server.api("GET", "/dags/laion_ingest").json()["is_paused"] is False, timeout=15)

    [run] = server.api("GET", "/dags/laion_ingest/dagRuns").json()["dag_runs"]
    assert unquote(browser.current_url).endswith("/runs/" + run["dag_run_id"])  # the UI opened the run it made
    assert server.wait_for_run(run["dag_run_id"]) == "success"
    assert {k: run["conf"][k] for k in ("first_shard", "last_shard", "source_url", "index_m",
                                        "index_ef_construction")} \
        == {"first_shard": 0, "last_shard": 1, "source_url": mirror.url, "index_m": 8, "index_ef_construction": 32}

    browser.get(f"{server.url}/dags/laion_ingest/runs/{quote(run['dag_run_id'], safe='')}/tasks/ingest_shard/mapped")
    browser.execute_script(  # no CSS transitions: the screenshot shows the end state, not an animation
        "document.head.insertAdjacentHTML('beforeend', '<style>*{transition:none!important}</style>')")
    wait(browser, "grid row for ingest_shard", EC.visibility_of_element_located(
        (By.CSS_SELECTOR, "[data-testid=task-ingest_shard]")))

    def shard_labels(driver):  # the rendered map indexes listed in the mapped instances table
        labels = sorted(e.text for e in driver.find_elements(By.CSS_SELECTOR,
                                                             "[data-testid=table-cell-rendered_map_index]"))
        return labels if len(labels) == 2 else False

    assert wait(browser, "2 mapped ingest_shard instances", shard_labels) == ["shard 0", "shard 1"]
    assert [(ti["rendered_map_index"], ti["state"])
            for ti in server.task_instances(run["dag_run_id"], "ingest_shard")] \
        == [("shard 0", "success"), ("shard 1", "success")]
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "shard 0" in body and "shard 1" in body
    browser.save_screenshot(str(ARTIFACTS / "grid.png"))


def test_the_search_page_searches_a_768_d_dataset_with_its_own_model(airflow, tmp_path, monkeypatch):
    """laion5b-100m chosen in the page's dataset field: the text is encoded by ViT-L/14's encoder (the
    tiny 768-d one, LAION_CLIP_L14_MODEL_DIR) and searched in laion_5b_100m, whose ids are the files'
    own; the 512-d laion table beside it is not what answers."""
    server, _ = airflow
    subset = datasets.get("laion5b-100m")
    generate_mirror(tmp_path / "subset", [0, 1], 1000, dataset=subset.name)
    for name in ("LAION_CHDB_PATH", "LAION_WORK_DIR"):  # the standalone's embedded ClickHouse
        monkeypatch.setenv(name, server.env[name])
    with MirrorServer(tmp_path / "subset") as source:
        for shard in (0, 1):
            pipeline.ingest(Attempt(shard, subset), source.url)
    r = server.http.post(f"{server.url}/laion-search/api/search",
                         data={"text": "a photo of a dog", "dataset": subset.name, "k": "10"}, timeout=120)
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    captions = [h["caption"] or "" for h in hits]
    assert len(hits) == 10 and sum("dog" in c for c in captions) >= 6, captions
    assert all(h["id"] < 2000 for h in hits)  # slices 0 and 1 of laion5b100m_part_1_of_10: ids 0..1999
    with ClickHouse(subset) as ch:
        assert ch.query("SELECT count() FROM laion_5b_100m WHERE id IN {ids:Array(UInt64)}",
                        ids=[h["id"] for h in hits])[0][0] == 10


def test_the_search_page_answers_a_text_and_an_image_with_a_grid_of_pictures(airflow, browser, tmp_path):
    server, mirror = airflow
    if not any(r["state"] == "success" for r in server.api("GET", "/dags/laion_ingest/dagRuns").json()["dag_runs"]):
        run = server.trigger({"first_shard": 0, "last_shard": 1, "source_url": mirror.url, "index_m": 8,
                              "index_ef_construction": 32}).json()  # when run without the test above
        assert server.wait_for_run(run["dag_run_id"]) == "success"
    anonymous = requests.post(f"{server.url}/laion-search/api/search", data={"text": "a dog"}, timeout=30)
    assert anonymous.status_code in (401, 403)  # the page is Airflow's: no login, no search

    login(browser, server)
    click(browser, "LAION search in the navigation", "a[href$='/plugin/laion-search']")
    wait(browser, "search page in an iframe", EC.frame_to_be_available_and_switch_to_it((By.TAG_NAME, "iframe")))
    wait(browser, "text box", EC.element_to_be_clickable((By.ID, "text"))).send_keys("a photo of a dog")
    browser.find_element(By.ID, "k").send_keys(Keys.CONTROL, "a")
    browser.find_element(By.ID, "k").send_keys("12")
    click(browser, "Search button", "#search")
    cards = wait(browser, "12 hits with their pictures loaded", lambda d: loaded_pictures(d, 12))
    captions = [c.find_element(By.CLASS_NAME, "caption").text for c in cards]
    assert other_nouns(captions) == [] and sum("dog" in c for c in captions) >= 6, captions
    assert "hnsw_candidate_list_size_for_search" in browser.find_element(By.ID, "status").text
    browser.switch_to.default_content()
    browser.save_screenshot(str(ARTIFACTS / "search-page.png"))

    picture = tmp_path / "query.jpg"
    picture.write_bytes(requests.get(f"{mirror.url}photos/000010000042.jpg", timeout=30).content)
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    browser.find_element(By.ID, "text").clear()
    browser.find_element(By.ID, "image").send_keys(str(picture))
    click(browser, "Search button", "#search")
    wait(browser, "12 hits for the image", lambda d: loaded_pictures(d, 12)
         and "12 hits" in d.find_element(By.ID, "status").text)
    browser.switch_to.default_content()
    browser.save_screenshot(str(ARTIFACTS / "search-by-image.png"))
