"""A person's click in a real browser: Debian's headless chromium opens a task in Label Studio's
labelling page, sees the served model's pre-annotation already chosen, submits it, and the export then
holds that label. The screenshot is kept (pytest's tmp folder and `.orbit/test-artifacts/labeling/`)."""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from labeling import service
from labeling.project import ensure_project
from labeling.tasks import import_images, predict_batch
from tests.conftest import REPO_ROOT
from tests.labeling.conftest import CLASSES, COLOURS, MODEL_TAG, disc

CHROMIUM = Path("/usr/bin/chromium")
#: Without the background-networking flags chromium keeps dialling Google's hosts, which this network refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("ORBIT_TEST_ARTIFACTS", REPO_ROOT / ".orbit" / "test-artifacts")) / "labeling"


@pytest.fixture
def browser_page():
    if not CHROMIUM.is_file():
        if os.environ.get("CI") and sys.platform.startswith("linux"):
            pytest.fail(f"no {CHROMIUM} on a Linux CI run: `make test` installs Debian's chromium")
        pytest.skip(f"no {CHROMIUM}; `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


@pytest.mark.slow
def test_a_person_confirms_the_pre_annotation_in_the_browser_and_the_export_holds_it(
    ls, label_studio, title, model_service, browser_page, tmp_path
):
    from playwright.sync_api import expect

    state, _ = label_studio
    project, _ = ensure_project(ls, CLASSES, title=title)
    image = disc(COLOURS["Neptune"], seed=11)
    report = import_images(
        ls,
        project["id"],
        [("neptune.jpg", image)],
        predict=functools.partial(predict_batch, model_service.url),
        model_version=MODEL_TAG,
    )
    assert report.imported == 1
    [task] = ls.tasks(project["id"])
    creds = service.load_credentials(service.paths(state))

    page = browser_page
    page.goto(f"{ls.url}/user/login/")
    page.fill("input[name=email]", creds.username)
    page.fill("input[name=password]", creds.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url)
    page.goto(f"{ls.url}/projects/{project['id']}/data?task={task['id']}")

    # the model's answer arrives pre-selected; the other classes are not
    expect(page.locator('input.ant-checkbox-input[name="Neptune"]')).to_be_checked()
    for other in ("Mars", "Uranus", "none of these"):
        expect(page.locator(f'input.ant-checkbox-input[name="{other}"]')).not_to_be_checked()
    expect(page.locator("img[src*='local-files']").first).to_be_visible()
    shot = tmp_path / "labeling-page.png"
    page.screenshot(path=str(shot))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)

    page.click('button[aria-label="Submit current annotation"]')

    deadline = time.monotonic() + 30
    while not (exported := ls.export(project["id"])) and time.monotonic() < deadline:
        time.sleep(0.5)
    [done] = exported
    [annotation] = done["annotations"]
    assert annotation["result"][0]["value"]["choices"] == ["Neptune"]
    assert annotation["completed_by"] == ls.request("GET", "/api/current-user/whoami")["id"]
    assert done["data"]["sha256"] == task["data"]["sha256"]
    assert ls.fetch(done["data"]["image"]) == image
