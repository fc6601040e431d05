"""The web UI: a chat playground and a usage dashboard, served by the same process at ``/ui``.

Plain HTML, CSS and one JavaScript file, no framework and no build step: the page is small, works
offline (no CDN), and ships inside the Python package, so the one install command is all
it needs. It talks to the public API only (``/v1/models``, ``/v1/chat/completions``,
``/v1/buckets``, ``/admin/...``) with the key the user typed, kept in the tab's sessionStorage.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
