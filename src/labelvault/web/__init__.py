"""Server-rendered pages over the JSON API (issue 7).

Pages are Jinja2 templates (autoescaped) with small hand-written ES modules; no build step, no
third-party origin. Every page answers with its own nonce-based strict CSP, ``no-store`` and
``no-referrer``; content of a project is never in a page's HTML, only fetched by the page's own
scripts from the one-task-at-a-time API and rendered as text. ``install_web`` mounts the pages
and the static files and turns errors on browser navigations into pages (401 → sign-in).
"""

from labelvault.web.install import install_web

__all__ = ["install_web"]
