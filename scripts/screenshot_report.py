"""Full-page PNG of an assessment report in headless Chromium (for the README).

    python scripts/screenshot_report.py runs/demo/report.html docs/report.png
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def main(report: str, png: str, width: int = 1280) -> None:
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 f"--window-size={width},1000"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        browser.get(Path(report).resolve().as_uri())
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(width, min(int(height) + 40, 16000))
        browser.save_screenshot(png)
    finally:
        browser.quit()


if __name__ == "__main__":
    main(*sys.argv[1:3])
