"""Write generated files, or with --check list the ones that differ from what would be written (the generators
under scripts/ share this; CI runs them with --check)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping

REPO = Path(__file__).resolve().parent.parent


def sync(files: Mapping[Path, str], *, check: bool, rerun: str) -> int:
    """0 when written (or, with `check`, already up to date); 1 and the stale paths on stderr otherwise."""
    stale = []
    for path, text in files.items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date (run {rerun}): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0
