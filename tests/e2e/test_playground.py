"""The playground page (plugins/playground, GET /playground) driven in a real headless Chromium, through
Debian's chromium-driver, against a real TorchServe serving the tiny model on the CPU.

The page is the one `make serve`/`make serve-tiny` serve: the session's TorchServe loads the plugins folder
`make plugin` builds. The last test's screenshot is kept in build/test-artifacts/ (CI uploads the folder);
docs/playground.png in the README is a copy of it.
"""

from __future__ import annotations

import os
import shutil

import pytest

from sdturbo_ops.paths import MODEL_NAME
from tests.support.helpers import REPO, http, post_json

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "build" / "test-artifacts"
SCREENSHOT = ARTIFACTS / "playground.png"
GENERATION_TIMEOUT = 120  # seconds: a 256x256 image on a busy two-core CPU takes a few


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [tool for tool in ("chromium", "chromedriver") if shutil.which(tool) is None]
    if missing:
        message = (f"the playground test needs {' and '.join(missing)} (Debian's chromium and chromium-driver); "
                   "`make test` installs them when run as root")
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run this test, never skip it
        pytest.skip(message)
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--window-size=1280,960", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to start its sandbox as root
    # A TMPDIR of its own: Chromium leaves its singleton socket folder there after it quits.
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"),
                                      env={**os.environ, "TMPDIR": str(tmp_path_factory.mktemp("chromium"))})
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_script_timeout(GENERATION_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(plugins_dir, torchserve, browser):
    """The playground, freshly loaded from the server."""
    browser.get(f"{torchserve.url}/playground")
    return browser


def fill(page, **fields) -> None:
    from selenium.webdriver.common.by import By

    for name, value in fields.items():
        element = page.find_element(By.ID, name)
        element.clear()
        element.send_keys(str(value))


def generate(page) -> None:
    """Click Generate and wait until the page has the reply, an image or an error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    before = len(page.find_elements(By.CSS_SELECTOR, "#results .result"))
    page.find_element(By.ID, "generate").click()
    WebDriverWait(page, GENERATION_TIMEOUT).until(
        lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#results .result")) > before
        or driver.find_element(By.ID, "error").text)


def results(page) -> list:
    from selenium.webdriver.common.by import By

    return page.find_elements(By.CSS_SELECTOR, "#results .result")


def test_a_typed_prompt_becomes_an_image_with_its_time(page):
    from selenium.webdriver.common.by import By

    fill(page, prompt="a lighthouse at dusk", seed=7, width=256, height=256)
    generate(page)
    assert page.find_element(By.ID, "error").text == ""
    [card] = results(page)
    image = card.find_element(By.TAG_NAME, "img")
    size = page.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
    assert size == [256, 256]  # a decoded image, not a broken one
    assert image.get_attribute("src").startswith("data:image/png;base64,iVBORw0KGgo")
    facts = card.find_element(By.CLASS_NAME, "facts").text
    assert " s · seed 7 · 256×256 · png" in facts and float(facts.split(" s ·")[0]) > 0


def test_an_invalid_size_shows_the_servers_message(page, torchserve):
    from selenium.webdriver.common.by import By

    fill(page, prompt="a lighthouse at dusk", width=500, height=256)
    generate(page)
    server = post_json(f"{torchserve.url}/predictions/{MODEL_NAME}",
                       {"prompt": "a lighthouse at dusk", "width": 500, "height": 256, "output_format": "png"})
    assert server.status == 400 and "multiple of 8" in server.json()["message"]
    assert page.find_element(By.ID, "error").text == f"400: {server.json()['message']}"
    assert results(page) == []


def test_a_negative_prompt_refused_without_guidance_shows_why(page):
    from selenium.webdriver.common.by import By

    fill(page, prompt="a lighthouse at dusk", negative_prompt="fog", width=256, height=256)
    generate(page)
    error = page.find_element(By.ID, "error").text
    assert error.startswith("422: ") and "guidance_scale" in error


def test_image_to_image_from_a_chosen_file(page, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    start = tmp_path / "start.png"
    Image.new("RGB", (320, 256), (200, 120, 40)).save(start)
    page.find_element(By.ID, "image").send_keys(str(start))
    fill(page, prompt="the same scene at night", strength=0.75)
    generate(page)
    [card] = results(page)
    assert "320×256 · png, image-to-image" in card.find_element(By.CLASS_NAME, "facts").text


def test_earlier_results_stay_newest_first(page):
    from selenium.webdriver.common.by import By

    fill(page, prompt="a lighthouse at dusk", seed=7, width=256, height=256, num_images=2)
    generate(page)
    fill(page, prompt="a red fox in the snow", seed=8, num_images=1)
    generate(page)
    cards = results(page)
    assert [card.find_element(By.CLASS_NAME, "prompt").text for card in cards] == [
        "a red fox in the snow", "a lighthouse at dusk"]
    assert [len(card.find_elements(By.TAG_NAME, "img")) for card in cards] == [1, 2]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert page.save_screenshot(str(SCREENSHOT))


def test_the_page_is_served_whole_and_may_only_talk_to_its_own_server(plugins_dir, torchserve):
    reply = http("GET", f"{torchserve.url}/playground", content_type=None)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    policy = reply.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    page = reply.body.decode()
    assert f'"/predictions/{MODEL_NAME}"' in page
    assert "http://" not in page.split("<script>", 1)[1] and "https://" not in page  # nothing fetched from elsewhere


def test_no_other_origin_is_granted_access(plugins_dir, torchserve):
    """The page is same-origin, so no CORS is needed, and TorchServe's stays off: a page from elsewhere that
    asks (a preflight, a POST with its Origin) is granted nothing."""
    import urllib.error
    import urllib.request

    url = f"{torchserve.url}/predictions/{MODEL_NAME}"
    origin = {"Origin": "http://127.0.0.1:9"}
    preflight = urllib.request.Request(url, method="OPTIONS", headers={
        **origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    post = urllib.request.Request(url, method="POST", data=b'{"prompt": "a cat", "width": 256, "height": 256}',
                                  headers={**origin, "Content-Type": "application/json"})
    for request in (preflight, post):
        try:
            with urllib.request.urlopen(request, timeout=GENERATION_TIMEOUT) as response:
                headers = response.headers
        except urllib.error.HTTPError as err:
            headers = err.headers
        assert not [name for name in headers if name.lower().startswith("access-control-")], request.method
