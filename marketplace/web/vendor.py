"""The JavaScript libraries the web app serves from node_modules: ethers and libsodium.

The pages load plain ES modules, no bundler and no CDN: `VENDOR_DIRS` names the folders
of the npm packages' ESM builds (installed from package-lock.json) that the app mounts
under `/static/vendor/<prefix>/`, and `IMPORT_MAP` is the browser import map that resolves
the same bare specifiers the modules in static/js import, so one source runs in the
browser and under node's test runner (which resolves them from node_modules itself).
libsodium-wrappers-sumo's ESM build imports `libsodium-sumo` (the WebAssembly, inlined),
hence two libsodium entries.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final

#: The repository's node_modules (the app runs from a checkout, like the devstack).
NODE_MODULES: Final = Path(__file__).resolve().parents[2] / "node_modules"
VENDOR_URL: Final = "/static/vendor"

#: URL prefix under /static/vendor/ -> the folder inside node_modules served there.
_ESM = Path("dist") / "modules-sumo-esm"
VENDOR_DIRS: Final[dict[str, Path]] = {
    "ethers": NODE_MODULES / "ethers" / "dist",
    "libsodium-wrappers-sumo": NODE_MODULES / "libsodium-wrappers-sumo" / _ESM,
    "libsodium-sumo": NODE_MODULES / "libsodium-sumo" / _ESM,
}

#: Bare specifier -> (vendor prefix, file inside its folder).
_ENTRY_POINTS: Final = {
    "ethers": ("ethers", "ethers.min.js"),
    "libsodium-wrappers-sumo": ("libsodium-wrappers-sumo", "libsodium-wrappers.mjs"),
    "libsodium-sumo": ("libsodium-sumo", "libsodium-sumo.mjs"),
}

#: The `<script type="importmap">` content of every page.
IMPORT_MAP: Final[dict[str, dict[str, str]]] = {
    "imports": {
        specifier: f"{VENDOR_URL}/{prefix}/{file}"
        for specifier, (prefix, file) in _ENTRY_POINTS.items()
    }
}

# Browsers run a module script only when it is served with a JavaScript MIME type, and
# Python's table knows `.mjs` only where the system's mime.types does: say it here, for
# whichever static-file server serves VENDOR_DIRS.
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")


def vendor_missing() -> str | None:
    """Why the vendored libraries cannot be served (a message naming `npm install`), or
    None when every entry point is in node_modules."""
    missing = [
        specifier
        for specifier, (prefix, file) in _ENTRY_POINTS.items()
        if not (VENDOR_DIRS[prefix] / file).is_file()
    ]
    if not missing:
        return None
    return (
        f"the web app's JavaScript libraries are missing from {NODE_MODULES} "
        f"({', '.join(missing)}): run `npm install --ignore-scripts` in the repository "
        "(or `bash scripts/dev test`, which installs them from package-lock.json)"
    )
