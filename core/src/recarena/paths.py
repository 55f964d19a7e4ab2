"""Where RecArena keeps what runs write: ``RECARENA_HOME`` (default ``~/.recarena``)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    p = Path(os.environ.get("RECARENA_HOME") or Path.home() / ".recarena")
    p.mkdir(parents=True, exist_ok=True)
    return p


def file_digest(path: Path | str, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (data checksums, bundle checksums, download checks)."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def config_dirs() -> list[Path]:
    """Where named configs (protocols, models, sweeps) are looked up, first match wins:
    ``RECARENA_CONFIGS`` (os.pathsep-separated), ./configs, then the source tree's configs/."""
    dirs = []
    env = os.environ.get("RECARENA_CONFIGS")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(Path.cwd() / "configs")
    repo = Path(__file__).resolve().parents[3] / "configs"  # core/src/recarena -> repo root
    dirs.append(repo)
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen and r.is_dir():
            seen.add(r)
            out.append(r)
    return out
