"""The tools users point at openapi.yaml, run the way its README and CI run them."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "openapi.yaml"
CLIENT_CONFIG = ROOT / "openapi-python-client.yaml"


def generate_client(out: Path) -> subprocess.CompletedProcess[str]:
    """`openapi-python-client generate` of openapi.yaml into the package directory `out`."""
    bin_dir = Path(sys.executable).parent
    # Its post-hooks format the client with ruff, found on PATH (the venv's, pinned).
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(SPEC),
         "--config", str(CLIENT_CONFIG), "--output-path", str(out), "--meta", "none",
         "--fail-on-warning"],
        capture_output=True, text=True, timeout=300, cwd=out.parent, env=env, check=False)


def import_client(out: Path) -> ModuleType:
    """Import the package `generate_client` wrote into `out` (named after the directory)."""
    sys.path.insert(0, str(out.parent))
    try:
        return importlib.import_module(out.name)
    finally:
        sys.path.remove(str(out.parent))
