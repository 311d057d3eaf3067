"""The search page in headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

Against the real server on the Luma catalogue: type a query, apply a filter, open the score breakdown, page,
upload a photo, search by an uploaded recording and by the microphone (Chromium's fake capture device plays an
espeak-ng recording), all with the keyboard where a person would. Screenshots go to ``tests/artefacts/browser``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import ARTEFACTS, Shared, luma_folder, luma_products, shared_api, speak

from hybrid_search.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.models, pytest.mark.browser]

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

SHOTS = ARTEFACTS / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def api(request: pytest.FixtureRequest, settings: Settings) -> Shared:
    return shared_api(request, settings)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speak("water bottle", tmp_path_factory.mktemp("speech") / "water-bottle.wav")


@pytest.fixture(scope="module")
def microphone(speech: Path) -> Path:
    """What Chromium's fake microphone plays (in a loop): the speech, then four seconds of silence."""
    padded = speech.with_name("microphone.wav")
    subprocess.run(["sox", str(speech), str(padded), "pad", "0.2", "4"], check=True, timeout=60)
    return padded


@pytest.fixture(scope="module")
def browser(microphone: Path) -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.fail("Chromium is missing: apt-get install chromium chromium-driver", pytrace=False)
    profile = tempfile.mkdtemp(prefix="hybrid-search-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1280,1000",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={microphone}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: Any, condition: Any, timeout: float = 90.0) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def cards(driver: Any) -> list[Any]:
    return list(driver.find_elements(By.CSS_SELECTOR, "#results .card"))


def titles(driver: Any) -> list[str]:
    return [c.find_element(By.TAG_NAME, "h3").text for c in cards(driver)]


def settled(driver: Any) -> None:
    """Wait until no search is in flight."""
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("aria-busy") == "false")


def summary(driver: Any) -> str:
    return str(driver.find_element(By.ID, "summary").text)


def test_search_page_end_to_end(browser: Any, api: Shared, speech: Path) -> None:
    d = browser
    d.get(api.url + "/")
    wait(d, lambda d: "199 products" in summary(d))
    categories = [o.text for o in Select(d.find_element(By.ID, "f-category")).options]
    assert any(c.startswith("Jackets (") for c in categories), categories
    shot(d, "01-start")

    # keyboard only: Tab goes skip link, home link, then the search box, the microphone, the search button
    order = []
    for _ in range(5):
        d.switch_to.active_element.send_keys(Keys.TAB)
        order.append(d.switch_to.active_element.get_attribute("id") or d.switch_to.active_element.text)
    assert order[2:] == ["q", "mic", "submit"], order
    d.find_element(By.ID, "q").click()
    d.switch_to.active_element.send_keys("hoodie", Keys.ENTER)
    wait(d, lambda d: "products for “hoodie”" in summary(d))
    assert len(cards(d)) == 12 and all("Hoodie" in t or "Sweatshirt" in t for t in titles(d)[:6])
    image = cards(d)[0].find_element(By.TAG_NAME, "img")
    wait(d, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
    shot(d, "02-text-query")

    # a filter from the facets: colour Red
    colour = Select(d.find_element(By.ID, "f-colour"))
    red = next(o.get_attribute("value") for o in colour.options if o.get_attribute("value").lower() == "red")
    colour.select_by_value(red)
    settled(d)
    products = luma_products()
    shown = [c for c in cards(d)]
    assert shown
    metas = [c.find_element(By.CLASS_NAME, "meta").text for c in shown]
    assert all("red" in m.lower() for m in metas), metas
    assert all("Red" in products[p].colours for p in [_id(c, products) for c in shown])
    shot(d, "03-filter-red")

    # the score breakdown, toggled with the keyboard
    toggle = d.find_element(By.ID, "explain")
    toggle.send_keys(Keys.SPACE)
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results .breakdown"))
    settled(d)
    rows = [r.text.splitlines()[0] for r in cards(d)[0].find_elements(By.CSS_SELECTOR, ".breakdown tbody th")]
    assert rows == ["bm25", "text knn"], rows
    shot(d, "04-score-breakdown")

    # clear the filters; page 2
    d.find_element(By.ID, "clear-filters").send_keys(Keys.ENTER)
    settled(d)
    first_page = titles(d)
    next_button = d.find_element(By.XPATH, "//nav[@id='pager']/button[contains(., 'Next')]")
    next_button.send_keys(Keys.ENTER)
    wait(d, lambda d: "page 2" in summary(d))
    assert not set(titles(d)) & set(first_page)
    shot(d, "05-page-2")

    # search by photo (the file chooser's input), words kept: photo + "hoodie"
    photo = luma_folder() / str(products["MH01"].main_image)
    d.find_element(By.ID, "photo-input").send_keys(str(photo))
    wait(d, lambda d: "your photo + “hoodie”" in summary(d))
    settled(d)
    assert titles(d)[0] == products["MH01"].title
    assert not d.find_element(By.ID, "photo-chip").get_attribute("hidden")
    rows = [r.text.splitlines()[0] for r in cards(d)[0].find_elements(By.CSS_SELECTOR, ".breakdown tbody th")]
    assert {"image knn", "colour knn"} <= set(rows), rows
    shot(d, "06-photo-and-words")
    d.find_element(By.ID, "photo-clear").send_keys(Keys.ENTER)
    settled(d)

    # an uploaded recording
    d.find_element(By.ID, "audio-input").send_keys(str(speech))
    wait(d, lambda d: d.find_element(By.ID, "transcript").is_displayed())
    settled(d)
    assert "Heard:" in d.find_element(By.ID, "transcript").text
    assert titles(d)[0] == "Affirm Water Bottle"
    assert "water" in d.find_element(By.ID, "q").get_attribute("value")
    shot(d, "07-voice-upload")


def test_microphone_records_and_searches(browser: Any, api: Shared) -> None:
    d = browser
    d.get(api.url + "/")
    wait(d, lambda d: "199 products" in summary(d))
    mic = d.find_element(By.ID, "mic")
    mic.send_keys(Keys.ENTER)
    wait(d, lambda d: mic.get_attribute("aria-pressed") == "true", 20)
    assert d.find_element(By.ID, "recording").is_displayed()
    shot(d, "08-recording")
    d.execute_script("return new Promise(r => setTimeout(r, 2500))")
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait(d, lambda d: mic.get_attribute("aria-pressed") == "false", 20)
    wait(
        d,
        lambda d: (
            d.find_element(By.ID, "transcript").is_displayed()
            or d.find_element(By.ID, "error").is_displayed()
        ),
    )
    settled(d)
    assert d.find_element(By.ID, "error").get_attribute("hidden"), d.find_element(By.ID, "error").text
    assert "bottle" in d.find_element(By.ID, "transcript").text
    assert "Affirm Water Bottle" in titles(d)[:3]
    shot(d, "09-microphone")


def test_errors_are_shown_to_the_user(browser: Any, api: Shared, tmp_path: Path) -> None:
    d = browser
    d.get(api.url + "/")
    wait(d, lambda d: "199 products" in summary(d))
    d.find_element(By.ID, "submit").send_keys(Keys.ENTER)
    error = d.find_element(By.ID, "error")
    wait(d, lambda d: error.is_displayed())
    assert "Type something" in error.text
    fake = tmp_path / "notes.jpg"
    fake.write_text("these are not pixels")
    d.find_element(By.ID, "photo-input").send_keys(str(fake))
    wait(d, lambda d: "not a JPEG" in error.text or "unsupported image" in error.text.lower())
    shot(d, "10-error")


def _id(card: Any, products: dict[str, Any]) -> str:
    title = card.find_element(By.TAG_NAME, "h3").text
    return next(p.id for p in products.values() if p.title == title)
