"""The sales store this project had before the sales table (commit fef7c37: Parquet parts by date, a ledger of
JSON entries, one catalogue JSON), read from git history into a temporary package `shelfcast_reference`.

The scale benchmark measures it beside the sales table in the same run, and the migration test builds a real
store of that kind with it, so neither carries a copy of the old code."""

from __future__ import annotations

import subprocess
from pathlib import Path

REFERENCE_COMMIT = "fef7c37"
ROOT = Path(__file__).resolve().parents[3]


def write_reference(folder: Path, commit: str = REFERENCE_COMMIT) -> Path:
    """Write `shelfcast_reference/{sales,ingest}.py` of `commit` under `folder`; put `folder` on sys.path to use it."""
    package = Path(folder) / "shelfcast_reference"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f'"""The sales store of commit {commit}."""\n')
    for name in ("sales", "ingest"):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:src/shelfcast/data/{name}.py"],
                              check=True, capture_output=True, text=True).stdout
        (package / f"{name}.py").write_text(text.replace("from shelfcast.data.sales import",
                                                         "from shelfcast_reference.sales import"))
    return Path(folder)
