"""Every dashboard page names an icon that is served: a browser otherwise asks for
/favicon.ico on each page and logs the 404 as a console error (seen on a fresh `make up`)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_the_pages_icon_is_served(client: TestClient) -> None:
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    link = re.search(r'<link rel="icon" href="([^"]+)" type="([^"]+)"', page.text)
    assert link is not None, "the page names no icon"
    icon = client.get(link.group(1))
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith(link.group(2))
    assert icon.content.startswith(b"<svg")
