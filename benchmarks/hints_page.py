"""How long the web page takes to recolour a photo after a click with a colour hint, in a real browser.

    python benchmarks/hints_page.py                       # the shipped model with a hint branch, 1-megapixel photo
    python benchmarks/hints_page.py --model=runs/hints_photos/generator.keras --clicks=10

The time is the page's own: from the moment the request leaves (the click) to the recoloured image loaded
on the page (`data-seconds`), through `colorgan serve` on this machine: upload, decode, model, full-size
colour, PNG, and the browser's decode. Without --model the shipped model is given an untrained hint branch
(saving.copy_weights), which costs what a trained one does. Needs Chromium, chromedriver and selenium, as
tests/test_serve_browser.py does. Timings depend on the machine's load; the first line says it.
"""
import os
import statistics
import sys
import tempfile

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A model with hints (default: the shipped one given a hint branch).")
flags.DEFINE_string("size", "1200x840", "Photo size, WxH (1200x840: 1.0 megapixel).")
flags.DEFINE_integer("clicks", 6, "Clicks timed (each adds a hint, so each is a recolour).")


def colorizer():
    from colorgan import inference, models, saving
    if FLAGS.model:
        return inference.load_colorizer(FLAGS.model)
    _, size = saving.load_generator()
    generator = models.build_generator("backbone:efficientnet_lite0", size, encoder_weights="none", hints=True)
    saving.copy_weights(str(saving.DEFAULT_GENERATOR), generator)
    return inference.load_colorizer(generator)


def main(_):
    import shutil

    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from colorgan import serve
    width, height = map(int, FLAGS.size.split("x"))
    y, x = np.mgrid[0:height, 0:width]
    photo = os.path.join(tempfile.mkdtemp(), "photo.jpg")
    Image.fromarray((80 + 60 * np.sin(x / 90.0) * np.cos(y / 70.0) + 40 * x / width).astype(np.uint8)).save(photo)
    server = serve.ColorizeServer(colorizer(), port=0, quiet=True).serve_in_background()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-proxy-server", "--window-size=1280,1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    done = lambda count: lambda b: (b.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done" and
                                    f"· {count} hint" in b.find_element(By.ID, "colorized-caption").text)
    try:
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {width}x{height} photo")
        browser.get(server.url)
        browser.find_element(By.ID, "file").send_keys(photo)
        WebDriverWait(browser, 120).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state"))
        image = browser.find_element(By.ID, "colorized")
        seconds = []
        for click in range(1, FLAGS.clicks + 1):
            offset = (click * 37) % (image.size["width"] // 2) - image.size["width"] // 4
            ActionChains(browser).move_to_element_with_offset(image, offset, 0).click().perform()
            WebDriverWait(browser, 120).until(done(click))
            seconds.append(float(browser.find_element(By.TAG_NAME, "body").get_attribute("data-seconds")))
        print(f"click to recoloured image: median {statistics.median(seconds):.2f} s, "
              f"max {max(seconds):.2f} s over {len(seconds)} clicks ({', '.join(f'{s:.2f}' for s in seconds)})")
    finally:
        browser.quit()
        server.close()


if __name__ == "__main__":
    app.run(main)
