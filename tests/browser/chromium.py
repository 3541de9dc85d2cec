"""Find Debian's Chromium for the browser tests, installing it with apt when we may.

Playwright's own browser download (``playwright install``) is never used: it fetches a browser
build from a CDN, which CI machines cannot reach. Debian's ``chromium`` package is reachable
wherever its package mirror is, and Playwright drives it through ``executable_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_TIMEOUT = 900  # seconds: apt-get update plus a first download of chromium
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> tuple[Path | None, str]:
    """``(path, "")`` when Chromium is there or could be installed, else ``(None, why not)``."""
    if CHROMIUM.exists():
        return CHROMIUM, ""
    if os.name != "posix" or os.geteuid() != 0:
        return None, (
            f"{CHROMIUM} is missing and this user is not root, so it cannot be installed here: "
            "run `sudo apt-get install -y chromium` (Debian/Ubuntu) to run the browser tests"
        )
    if shutil.which("apt-get") is None:
        return None, f"{CHROMIUM} is missing and there is no apt-get to install it with"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            result = subprocess.run(
                command,
                env=env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(command)}` did not finish in {INSTALL_TIMEOUT} s"
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            return None, f"`{' '.join(command)}` failed ({result.returncode}): {' / '.join(tail)}"
    if not CHROMIUM.exists():
        return None, f"apt-get installed chromium, but {CHROMIUM} is still missing"
    return CHROMIUM, ""
