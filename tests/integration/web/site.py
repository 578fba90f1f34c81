"""A small world for the web tests: one organization, three projects (text classification with
hostile-looking items, entity spans, image boxes), one person per role, set up over the API."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field

import httpx
from PIL import Image, ImageDraw
from tests.support.platform import (
    ServerThread,
    TestUser,
    add_member,
    make_org,
    make_project,
    make_user,
    token_for,
)

from labelvault.platform import Platform

ROLES = ("annotator", "annotator2", "reviewer", "manager", "data_owner")
HOSTILE = (
    "<img src=x onerror=\"window.__pwned='img';alert(1)\">",
    "<script>window.__pwned='script';alert(2)</script> plain words",
    "<a href=\"javascript:window.__pwned='link';alert(3)\">click me</a>",
)
SPAN_TEXT = "😀😀 Alice met Bob in Zürich."  # two astral characters before the entity
SCHEMAS = {
    "text": {"kind": "text_classification", "labels": ["spam", "ham", "unsure"]},
    "spans": {"kind": "text_spans", "labels": ["PER", "LOC"]},
    "boxes": {"kind": "image_boxes", "labels": ["square", "circle"]},
}
IMAGE_SIZE = (320, 200)


def sample_png() -> bytes:
    img = Image.new("RGB", IMAGE_SIZE, (40, 90, 160))
    draw = ImageDraw.Draw(img)
    draw.rectangle((40, 40, 120, 120), fill=(240, 200, 40))
    draw.ellipse((180, 50, 280, 150), fill=(200, 60, 60))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


@dataclass
class Site:
    org_id: uuid.UUID
    projects: dict[str, uuid.UUID]
    users: dict[str, TestUser] = field(default_factory=dict)
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def api(self, project: str, path: str) -> str:
        return f"/api/v1/projects/{self.projects[project]}{path}"

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()


async def build_site(
    platform: Platform, server: ServerThread, settings: dict[str, object] | None = None
) -> Site:
    org = await make_org(platform)
    projects = {name: (await make_project(platform, org.id)).id for name in SCHEMAS}
    site = Site(org.id, projects)
    for name in ROLES:
        user = await make_user(platform, org.id)
        role = "annotator" if name.startswith("annotator") else name
        for pid in projects.values():
            await add_member(platform, pid, user, role)
        token = await token_for(platform, user, list(projects.values()), max_role=role)
        site.users[name] = user
        site.clients[name] = server.client(headers={"authorization": f"Bearer {token}"})
    manager, owner = site.clients["manager"], site.clients["data_owner"]
    for name, schema in SCHEMAS.items():
        r = await manager.put(
            site.api(name, "/settings"),
            json={"label_schema": schema, "review_share": 1.0, **(settings or {})},
        )
        assert r.status_code == 200, r.text
    rows = "".join(json.dumps({"text": t}) + "\n" for t in HOSTILE).encode()
    r = await owner.post(site.api("text", "/imports"), content=rows, params={"format": "jsonl"})
    assert r.status_code == 201, r.text
    r = await owner.post(
        site.api("spans", "/imports"),
        content=(json.dumps({"text": SPAN_TEXT}) + "\n").encode(),
        params={"format": "jsonl"},
    )
    assert r.status_code == 201, r.text
    r = await owner.post(
        site.api("boxes", "/imports"),
        content=sample_png(),
        params={"format": "image", "name": "shapes.png"},
    )
    assert r.status_code == 201, r.text
    return site
