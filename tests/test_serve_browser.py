"""The demo page in a real headless Chromium (Debian's chromium + chromium-driver):
upload an image, run a detect prompt, wait for the answer, check the drawn overlay; then
the same with streamed tokens."""
import os

import numpy as np
from PIL import Image
import pytest

from big_vision_lite.serve import server as server_lib
from tests import serve_fixtures as sf

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _browser():
  """A headless Chrome driven through the system chromedriver (nothing downloaded)."""
  if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    msg = (f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install -y chromium "
           "chromium-driver (.ci/run installs them)")
    if os.environ.get("CI"):
      pytest.fail(msg)
    pytest.skip(msg)
  from selenium import webdriver  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.chrome import service  # pylint: disable=import-outside-toplevel
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1000,900", "--no-first-run", "--disable-extensions"):
    options.add_argument(arg)
  # An explicit driver path: selenium-manager is not run, so nothing is fetched.
  return webdriver.Chrome(service=service.Service(executable_path=CHROMEDRIVER),
                          options=options)


@pytest.mark.slow
def test_page_detect_draws_boxes(tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.support import ui  # pylint: disable=import-outside-toplevel
  tok = sf.make_tokenizer(str(tmp_path / "tok.model"))
  probe = sf.engine(*sf.random_model(tok), tok)
  model, params = sf.chain_model(tok, "<loc0100><loc0200><loc0700><loc0800> cat",
                                 sf.separator_id(probe))
  engine = sf.engine(model, params, tok)
  image = tmp_path / "shapes.png"
  pixels = np.full((120, 160, 3), 230, np.uint8)
  pixels[20:80, 40:120] = (200, 30, 30)
  Image.fromarray(pixels).save(image)
  driver = _browser()
  try:
    with server_lib.Server(engine) as server:
      driver.set_page_load_timeout(60)
      driver.get(server.url + "/")
      ui.WebDriverWait(driver, 60).until(
          lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
      assert driver.find_element(By.ID, "max_tokens").get_attribute("value") == "8"
      driver.find_element(By.ID, "image").send_keys(str(image))
      ui.Select(driver.find_element(By.ID, "task")).select_by_visible_text("detect")
      prompt = driver.find_element(By.ID, "prompt")
      assert prompt.get_attribute("value") == "detect circle"
      prompt.clear()
      prompt.send_keys("detect cat")
      driver.find_element(By.ID, "submit").click()
      status = lambda d: d.find_element(By.ID, "status").text
      ui.WebDriverWait(driver, 120).until(lambda d: status(d) not in ("", "Running..."))
      assert "object(s)" in status(driver), (status(driver), driver.get_log("browser"))
      answer = driver.find_element(By.ID, "answer").text
      boxes = [{k: float(b.get_attribute(k)) for k in ("x", "y", "width", "height")}
               for b in driver.find_elements(By.CSS_SELECTOR, "#overlay rect.box")]
      labels = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#overlay text")]
      shot = tmp_path / "page.png"
      driver.save_screenshot(str(shot))
      first_status = status(driver)
      # Again with streamed tokens (server-sent events read by the page).
      driver.find_element(By.CSS_SELECTOR, "details summary").click()
      driver.find_element(By.ID, "stream").click()
      driver.find_element(By.ID, "submit").click()
      ui.WebDriverWait(driver, 120).until(lambda d: "streamed" in status(d)
                                          or "rror" in status(d))
      streamed = (status(driver), driver.find_element(By.ID, "answer").text,
                  len(driver.find_elements(By.CSS_SELECTOR, "#overlay rect.box")))
  finally:
    driver.quit()
  assert answer == "<loc0100><loc0200><loc0700><loc0800> cat"
  assert len(boxes) == 1 and labels == ["cat"], (first_status, labels)
  # Box in the image's pixel grid: x = 200/1023 * 160, width = 600/1023 * 160, ...
  box = boxes[0]
  np.testing.assert_allclose([box["x"], box["y"], box["width"], box["height"]],
                             [200 / 1023 * 160, 100 / 1023 * 120, 600 / 1023 * 160,
                              600 / 1023 * 120], atol=0.01)
  assert "1 object(s)" in first_status and "finished by eos" in first_status
  assert "1 object(s)" in streamed[0] and "finished by eos" in streamed[0], streamed
  assert streamed[1:] == (answer, 1)
  png = np.asarray(Image.open(shot).convert("RGB"))
  assert png.shape[0] > 100 and png.shape[1] > 100
  # The box's stroke colour (#e6194b) is drawn on the screenshot.
  assert np.any(np.all(np.abs(png.astype(int) - (230, 25, 75)) < 40, axis=-1))
