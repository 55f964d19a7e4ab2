"""Opens a report in headless Chromium (Debian's, driven by Playwright) and says what a reader
would see: console errors, images that did not load, tables, and a screenshot."""

from __future__ import annotations

import shutil
from pathlib import Path


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def check_page(page_path: str | Path, screenshot: str | Path | None = None, width: int = 1280) -> dict:
    from playwright.sync_api import sync_playwright

    exe = find_chromium()
    if exe is None:
        raise RuntimeError("no Chromium on PATH (apt-get install chromium)")
    url = Path(page_path).resolve().as_uri()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"failed to load {r.url}"))
        page.goto(url, wait_until="load")
        info = page.evaluate("""() => ({
            images: Array.from(document.images).map(i => ({src: i.getAttribute('src'), w: i.naturalWidth, h: i.naturalHeight})),
            tables: document.querySelectorAll('table').length,
            rows: document.querySelectorAll('tr').length,
            title: document.title,
        })""")
        if screenshot:
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    info["console_errors"] = errors
    info["broken_images"] = [i["src"] for i in info["images"] if not i["w"]]
    return info


def is_blank(png: str | Path, min_std: float = 0.02) -> bool:
    """True when a screenshot is (nearly) one colour."""
    import matplotlib.image as mpimg

    img = mpimg.imread(str(png))
    return float(img[..., :3].std()) < min_std
