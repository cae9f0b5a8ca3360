"""Copy the project as a clean clone has it, for tests that build or serve from a copy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def _project_files(project_root: Path) -> list[str]:
    """Files of the working tree that git does not ignore (what a clean clone has)."""
    if shutil.which("git") and (project_root / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=project_root,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return [name for name in listed.split("\0") if name]
    return [
        str(path.relative_to(project_root))
        for top in ("src", "conf", "pyproject.toml", "README.md")
        for path in ([project_root / top] + list((project_root / top).rglob("*")))
        if path.is_file() and "__pycache__" not in path.parts
    ]


def copy_clean_checkout(project_root: Path, destination: Path) -> None:
    """Copy every file a clean clone of ``project_root`` would hold into ``destination``."""
    for name in _project_files(project_root):
        source = project_root / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
