"""The web colorizer in a real browser: headless Debian Chromium, driven by Selenium, on localhost only.

Needs `chromium`, `chromium-driver` (Debian) and `selenium` (PyPI); skipped with the reason when any is
missing. `make test` installs them when it can.
"""
import json
import os
import shutil
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from colorgan import hints, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
INSTALL = "install it with `apt-get install chromium chromium-driver` (make test does when it can)"
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason=f"Chromium is not installed; {INSTALL}"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason=f"chromedriver is not installed; {INSTALL}"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed; pip install selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")
PHOTO = os.path.join(SKIMAGE_DATA, "coffee.png")  # a real photo, wider than tall, so sizes cannot swap


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import vivid_tiny_generator
    from colorgan.inference import load_colorizer
    path = tmp_path_factory.mktemp("model") / "g.keras"
    vivid_tiny_generator(32).save(path)  # strong colours, so that the strength slider's effect shows
    server = serve.ColorizeServer(load_colorizer(str(path)), port=0, quiet=True).serve_in_background()
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-proxy-server", "--window-size=1280,1000", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium must not try to download one (no internet here).
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_until_finished(browser, timeout=60):
    WebDriverWait(browser, timeout).until(
        lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    return browser.find_element(By.TAG_NAME, "body").get_attribute("data-state")


def upload(browser, server, path):
    browser.get(server.url)
    assert "colorgan" in browser.title
    browser.find_element(By.ID, "file").send_keys(str(path))
    return wait_until_finished(browser)


def colour_spread(browser):
    """The largest difference between the colour channels of any pixel of the result on show."""
    return browser.execute_script("""
        const img = document.getElementById('colorized'), canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0);
        const d = context.getImageData(0, 0, canvas.width, canvas.height).data;
        let spread = 0;
        for (let i = 0; i < d.length; i += 4)
          spread = Math.max(spread, Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]));
        return spread;""")


def test_page_colorizes_an_uploaded_photo(browser, server, tmp_path):
    state = upload(browser, server, PHOTO)
    status = browser.find_element(By.ID, "status").text
    assert state == "done", status
    width, height = Image.open(PHOTO).size
    size = browser.execute_script("const i = document.getElementById('colorized');"
                                  "return [i.naturalWidth, i.naturalHeight];")
    assert size == [width, height]
    download = browser.find_element(By.ID, "download")
    assert download.get_attribute("href").startswith("blob:")
    assert download.get_attribute("download") == "coffee-colorized.png"
    assert browser.find_element(By.ID, "original").is_displayed()
    assert browser.find_element(By.ID, "colorized").is_displayed()

    screenshot = tmp_path / "colorizer-page.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")

    # The before/after view: the slider moves the split between the gray original and the result.
    browser.find_element(By.ID, "view-compare").click()
    assert browser.find_element(By.ID, "compare").is_displayed()
    assert not browser.find_element(By.ID, "pair").is_displayed()
    browser.execute_script("const s = document.getElementById('split'); s.value = 30;"
                           "s.dispatchEvent(new Event('input'));")
    split = browser.execute_script("return document.getElementById('compare').style"
                                   ".getPropertyValue('--split')")
    assert split == "30%"
    compare = tmp_path / "colorizer-compare.png"
    browser.save_screenshot(str(compare))
    print(f"screenshot: {compare}")

    # The colour strength: letting the slider go at 0 colours the same photo again, in gray.
    browser.find_element(By.ID, "view-pair").click()
    assert colour_spread(browser) > 10
    browser.execute_script("const s = document.getElementById('saturation'); s.value = 0;"
                           "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));")
    assert browser.find_element(By.ID, "saturation-value").text == "0.00×"
    WebDriverWait(browser, 60).until(lambda b: "colour 0.00×" in b.find_element(By.ID, "colorized-caption").text)
    assert wait_until_finished(browser) == "done"
    assert colour_spread(browser) <= 2

    # Nothing blocked or broken: a request for anything off this server would show up here.
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_page_shows_a_readable_message_for_a_bad_file(browser, server, tmp_path):
    bad = tmp_path / "not-a-photo.png"
    bad.write_text("this is a text file, not a photo")
    assert upload(browser, server, bad) == "error"
    status = browser.find_element(By.ID, "status")
    assert "error" in status.get_attribute("class")
    assert "not an image" in status.text and "{" not in status.text
    browser.save_screenshot(str(tmp_path / "colorizer-error.png"))
    print(f"screenshot: {tmp_path / 'colorizer-error.png'}")


# --------------------------------------------------------------------------------------------------
# Colour hints: click the photo, pick a colour, see it recoloured there and not far from there


@pytest.fixture(scope="module")
def hint_server(tmp_path_factory):
    """A server whose model is built for the test (tests/conftest.py): gray without hints; a hint colours
    its model pixel and the 8 around it (at 32 px, one model pixel is 1/32 of the photo's width)."""
    from conftest import hint_model_built_for_it
    from colorgan.inference import load_colorizer
    server = serve.ColorizeServer(load_colorizer(hint_model_built_for_it(32)), port=0, quiet=True)
    yield server.serve_in_background()
    server.close()


@pytest.fixture(scope="module")
def megapixel_photo(tmp_path_factory):
    """A 1-megapixel gray photo (1200 x 840, smooth shading), as a JPEG."""
    y, x = np.mgrid[0:840, 0:1200]
    pixels = (80 + 60 * np.sin(x / 90.0) * np.cos(y / 70.0) + 40 * x / 1200).astype(np.uint8)
    path = tmp_path_factory.mktemp("photos") / "street.jpg"
    Image.fromarray(pixels).save(path, quality=92)
    return path


def pixels_at(browser, points):
    """The result's RGB at photo pixels [(x, y), ...]."""
    return browser.execute_script("""
        const img = document.getElementById('colorized'), canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0);
        return arguments[0].map(([x, y]) => Array.from(context.getImageData(x, y, 1, 1).data.slice(0, 3)));""",
                                  [list(map(int, p)) for p in points])


def recolour_seconds(browser):
    """The page's own time from a request leaving to its answer on show."""
    return float(browser.find_element(By.TAG_NAME, "body").get_attribute("data-seconds"))


def wait_for_caption(browser, text, timeout=60):
    WebDriverWait(browser, timeout).until(lambda b: text in b.find_element(By.ID, "colorized-caption").text
                                          and b.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")


def test_a_click_with_a_colour_recolours_the_photo_there_and_not_far_from_there(browser, hint_server, megapixel_photo,
                                                                                tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    browser.get_log("browser")  # what earlier tests left there
    assert upload(browser, hint_server, megapixel_photo) == "done"
    assert browser.find_element(By.ID, "hints").is_displayed()
    browser.find_element(By.CSS_SELECTOR, '.swatch[data-color="#c62828"]').click()  # red
    image = browser.find_element(By.ID, "colorized")
    ActionChains(browser).move_to_element_with_offset(image, -image.size["width"] // 5, image.size["height"] // 8) \
        .click().perform()
    wait_for_caption(browser, "· 1 hint")
    seconds = [recolour_seconds(browser)]

    browser.save_screenshot(str(tmp_path / "colorizer-hints.png"))
    print(f"screenshot: {tmp_path / 'colorizer-hints.png'}")

    # Where the click landed, in the photo's pixels: the page keeps it in its address.
    fragment = browser.execute_script("return location.hash")
    x, y, colour = fragment.removeprefix("#hints=").split(",")
    x, y = int(x), int(y)
    assert colour == "c62828" and abs(x - 1200 * 0.3) < 12 and abs(y - 840 * 0.625) < 12
    cell = 1200 / 32  # one model pixel, in photo pixels
    near = [(x, y), (x + cell / 2, y), (x, y - cell / 3)]
    far = [(x + 3 * cell, y), (x - 3 * cell, y + 2 * cell), (1100, 50), (50, 800)]
    for red, green, blue in pixels_at(browser, near):
        assert red > green + 40 and red > blue + 40  # the chosen red, at the place clicked
    for pixel in pixels_at(browser, far):
        assert max(pixel) - min(pixel) <= 2, pixel  # and gray, as before, further away

    # The hints as JSON, the file `colorgan colorize --hints` reads.
    link = browser.find_element(By.ID, "hint-download")
    assert link.is_displayed() and link.get_attribute("download") == "street-hints.json"
    kind, _, text = link.get_attribute("href").partition(",")
    assert kind == "data:application/json;charset=utf-8"
    document = json.loads(urllib.parse.unquote(text))
    assert document == {"points": [{"x": x, "y": y, "color": "#c62828"}], "width": 1200, "height": 840}
    hints.resolve(hints.loads(json.dumps(document)), np.zeros((840, 1200), np.uint8))  # as colorize --hints takes it

    # Undo: gray again, and the address forgets the hint.
    browser.find_element(By.ID, "hint-undo").click()
    WebDriverWait(browser, 60).until(lambda b: "hint" not in b.find_element(By.ID, "colorized-caption").text
                                     and b.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
    seconds.append(recolour_seconds(browser))
    (pixel,) = pixels_at(browser, [(x, y)])
    assert max(pixel) - min(pixel) <= 2 and browser.execute_script("return location.hash") == ""

    # The address brings the hint back: on the photo on show, and after a reload on the photo opened next.
    browser.execute_script("location.hash = arguments[0]", fragment)
    wait_for_caption(browser, "· 1 hint")
    seconds.append(recolour_seconds(browser))
    # The target: a 1-megapixel photo recoloured within a second of the click, on 2 CPU cores (the median of
    # the three recolours, so that one stall of a busy machine does not decide it).
    print(f"recoloured a 1-megapixel photo in {', '.join(f'{s:.2f}' for s in seconds)} s")
    assert sorted(seconds)[1] < 1.0
    browser.get("about:blank")
    browser.get(hint_server.url + fragment)
    browser.find_element(By.ID, "file").send_keys(str(megapixel_photo))
    wait_for_caption(browser, "· 1 hint")
    (red, green, blue), = pixels_at(browser, [(x, y)])
    assert red > green + 40 and red > blue + 40
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
