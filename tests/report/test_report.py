import re
import shutil
from pathlib import Path

import pytest

from advkeras.evaluation.risk import risk_summary

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_report_is_self_contained_and_has_its_sections(tiny_run):
    page = (tiny_run.out / "report.html").read_text()
    for section in ("Risk summary", "Model", "Attacks", "Defenses", "Detectors", "Feature responses",
                    "Relevant neurons", "Prediction similarity (attack processes)", "Activation graphs"):
        assert f"<h2>{section}</h2>" in page, section
    srcs = re.findall(r'src="([^"]+)"', page)
    assert len(srcs) == len(tiny_run.figures) >= 1
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page
    acc = tiny_run.metrics["model"]["test"]["accuracy"]
    assert f"{acc:.3f}" in page


def test_risk_levels_follow_the_stated_rules():
    attacks = [{"attack": "pgd", "eps": 2 / 255, "success_rate_on_correct": 0.9, "n": 100, "clean_accuracy": 0.8},
               {"attack": "fgsm", "eps": 2 / 255, "success_rate_on_correct": 0.1, "n": 100, "clean_accuracy": 0.8},
               {"attack": "fgsm", "eps": 8 / 255, "success_rate_on_correct": 0.95, "n": 100, "clean_accuracy": 0.8}]
    rows = risk_summary({"attacks": attacks,
                         "detector_summary": [{"detector": "d", "attack": "pgd", "tpr_at_5": 0.95, "fpr_reached": 0.04,
                                               "fpr_reached_ci": [0.01, 0.1], "calibration_enough": True},
                                              {"detector": "d", "attack": "adaptive@0.0157", "tpr_at_5": 0.92,
                                               "fpr_reached": 0.04, "fpr_reached_ci": [0.01, 0.1], "adaptive": True,
                                               "calibration_enough": True, "evasion_success": 0.02,
                                               "evasion_ci": [0.0, 0.07], "n_attacked": 90}],
                         "ps_summary": {"detected_share": 0.5, "benign_flagged_share": 0.0}})
    by = {r["threat"]: r for r in rows}
    evasion = by["evasion at a small budget"]
    assert evasion["level"] == "high" and evasion["attack"] == "pgd"  # the strongest attack, not the first
    assert "PGD" in evasion["reason"] and "2/255" in evasion["reason"] and "80 correctly" in evasion["reason"]
    assert by["adversarial inputs going unnoticed"]["level"] == "low"
    assert by["attack campaigns through the API"]["level"] == "high"
    checked = {"sanity_checks": {"passed": True, "failed": [], "checks": {}}}
    weak_only = risk_summary({"attacks": attacks[1:], "model": checked})[0]
    assert weak_only["level"] == "low" and weak_only["attack"] == "fgsm"  # judged at the small budget, not 8/255
    assert risk_summary({"attacks": attacks[1:]})[0]["level"] == "medium"  # no sanity checks run: never low


def _chrome():
    try:
        from selenium import webdriver
    except ImportError:
        return None, "selenium is not installed (pip install advkeras[test])"
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        return None, "chromium/chromedriver missing: apt-get install chromium chromium-driver (make test tries)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,2000"):
        opts.add_argument(flag)
    from selenium.webdriver.chrome.service import Service
    return webdriver.Chrome(service=Service(driver), options=opts), ""


def test_report_renders_in_headless_chromium(tiny_run):
    browser, why = _chrome()
    if browser is None:
        pytest.skip(why)
    try:
        browser.get((tiny_run.out / "report.html").resolve().as_uri())
        headings = [h.text for h in browser.find_elements("tag name", "h2")]
        assert {"Risk summary", "Model", "Attacks", "Defenses", "Detectors", "Activation graphs"} <= set(headings)
        images = browser.find_elements("tag name", "img")
        assert images and all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                     img) > 0 for img in images)
        rows = browser.find_elements("css selector", "table.risks tbody tr")
        assert len(rows) >= 1 and rows[0].find_element("css selector", ".lvl").text in {"high", "medium", "low"}
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, min(int(height) + 40, 12000))  # the whole page in one screenshot
        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "report.png"))
    finally:
        browser.quit()
