"""The template search path: which of the operator's files are used, and what they render.

`[newsletter] templates_dir` overrides the packaged templates file by file, by the same path
(`email/roundup.mjml.j2`, `web/base.html.j2`). A file placed at the wrong path (without its
`email/` or `web/` folder, or with a misspelt name) is simply never looked up, so the
operator's change silently does nothing: `unused_overrides` names such files.

A draft stores its render; `templates_digest` fingerprints the email templates it was
rendered from, so that a preview can tell the stored render is out of date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

EMAIL_FOLDER = "email"


def _files(folder: Path) -> dict[str, Path]:
    """Every file under `folder` by its template name, hidden files (.git, .DS_Store) left out."""
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in name.split("/")):
            found[name] = path
    return found


def unused_overrides(dirs: Sequence[Path]) -> tuple[str, ...]:
    """One warning per operator file that no template lookup will load.

    The last folder is the packaged one. An operator's file is used when it replaces a
    packaged template or when another of the operator's templates names it (a partial of
    their own); anything else is a mistake worth pointing out.
    """
    *custom, packaged = [Path(d) for d in dirs]
    known = set(_files(packaged))
    warnings: list[str] = []
    for folder in custom:
        if not folder.is_dir():
            warnings.append(
                f"templates_dir {folder} does not exist; the packaged templates are used"
            )
            continue
        files = _files(folder)
        texts = {name: _read(path) for name, path in files.items()}
        for name, path in files.items():
            named = any(name in text for other, text in texts.items() if other != name)
            if name in known or named:
                continue
            warnings.append(f"{path} overrides nothing and is never used; {_advice(name, known)}")
    return tuple(warnings)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _advice(name: str, known: set[str]) -> str:
    basename = name.rpartition("/")[2]
    matches = sorted(k for k in known if k.rpartition("/")[2] == basename)
    if matches:
        return f"move it to {matches[0]} inside templates_dir"
    return "overrides must have the path of a packaged template, under email/ or web/"


def templates_digest(dirs: Sequence[Path]) -> str:
    """SHA-256 over the email templates as looked up (the first folder's file wins)."""
    effective: dict[str, Path] = {}
    for folder in dirs:
        for name, path in _files(Path(folder) / EMAIL_FOLDER).items():
            effective.setdefault(name, path)
    digest = hashlib.sha256()
    for name in sorted(effective):
        content = effective[name].read_bytes()
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()
