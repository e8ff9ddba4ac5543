"""Take the README's screenshots of the web panel: run `lwfm demo`'s workflow on a
throw-away home, serve the panel, and photograph it in headless chromium.

    python examples/web_panel/screenshot.py [OUT_DIR]   # default: beside this file

Needs `pip install 'lwfm[web]' playwright` and Debian's chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from lwfm import Manager
from lwfm.demo import run_demo
from lwfm.web import WebPanel


def main() -> None:
    from playwright.sync_api import sync_playwright
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LWFM_HOME"] = tmp
        with Manager(tmp) as m:
            run_demo(m, echo=lambda *_: None)
            wf = next(w for w in m.workflows() if w.name == "demo")
            with WebPanel(m, "127.0.0.1", 0, allow_cancel=True) as panel, \
                    sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1280, "height": 760})
                page.goto(f"{panel.url}thread/{wf.id}")
                page.wait_for_selector("body[data-drawn]")
                join = page.evaluate("() => window.lwfmCy.nodes('[label ^= \"join\"]').id()")
                if join:   # show the facts panel and a join's lineage
                    page.evaluate("(id) => { window.lwfmCy.getElementById(id).emit('tap'); }", join)
                page.screenshot(path=str(out / "thread.png"))
                page.goto(panel.url)
                page.wait_for_selector("body[data-loaded='1']")
                page.screenshot(path=str(out / "jobs.png"))
                browser.close()
    print(f"OK screenshots in {out}")


if __name__ == "__main__":
    main()
