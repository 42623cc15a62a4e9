"""The sales schema (`date,store,item,sales`), a fast loader for trusted history and a validating reader.

`load_sales` reads the Kaggle bundle (a CSV, or a zip holding `train.csv`) for training and benchmarks.
`validate_sales` checks every row of an untrusted file and splits it into accepted rows and rejected rows,
each rejected row carrying the reason; the ingest flow builds on it.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shelfcast.contract.errors import SalesSchemaError

COLUMNS = ("date", "store", "item", "sales")
KEY = ("date", "store", "item")


def parse_range(text: str | None) -> list[int] | None:
    """Parse `"1-5"`, `"3"` or `"1-3,7,9-10"` into a sorted list of ints; None or "" or "all" means every one."""
    if text is None or str(text).strip().lower() in ("", "all"):
        return None
    values: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                if low > high:
                    raise ValueError
                values.update(range(low, high + 1))
            else:
                values.add(int(part))
        except ValueError:
            raise SalesSchemaError(
                f"range {text!r}: part {part!r} is not a number or LOW-HIGH range; write it like '1-5' or '1-3,7'"
            ) from None
    return sorted(values)


def _open_csv(path: Path) -> io.BufferedIOBase | Path:
    if path.suffix.lower() != ".zip":
        return path
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
        if "train.csv" not in names:
            raise SalesSchemaError(
                f"file {path}: the zip holds {names} but no train.csv; pass the Kaggle bundle or a CSV file"
            )
        return io.BytesIO(bundle.read("train.csv"))


def select_series(frame: pd.DataFrame, stores: list[int] | None, items: list[int] | None) -> pd.DataFrame:
    """The rows of the given stores and items (None keeps every one)."""
    if stores is not None:
        frame = frame[frame["store"].isin(stores)]
    if items is not None:
        frame = frame[frame["item"].isin(items)]
    return frame


def load_sales(
    path: str | Path,
    stores: list[int] | None = None,
    items: list[int] | None = None,
) -> pd.DataFrame:
    """Load trusted history in Kaggle format, keeping the selected stores and items.

    Returns columns `date` (datetime64), `store`, `item`, `sales` (int), sorted by store, item, date.
    """
    path = Path(path)
    if not path.exists():
        raise SalesSchemaError(f"file {path} does not exist; pass --data with a Kaggle train.csv or its zip")
    frame = pd.read_csv(_open_csv(path))
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SalesSchemaError(
            f"file {path}: missing column(s) {missing}; expected a header 'date,store,item,sales'"
        )
    frame = select_series(frame[list(COLUMNS)], stores, items)
    if frame.empty:
        raise SalesSchemaError(f"file {path}: no rows for stores={stores} items={items}; check the selection")
    frame = frame.assign(date=pd.to_datetime(frame["date"]), sales=frame["sales"].astype(np.int64))
    return frame.sort_values(["store", "item", "date"]).reset_index(drop=True)


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of validating one file: accepted rows, rejected rows (with `line` and `reason`)."""

    source: str
    accepted: pd.DataFrame
    rejected: pd.DataFrame

    @property
    def rows_read(self) -> int:
        return len(self.accepted) + len(self.rejected)


def read_raw(path: str | Path, source: str | None = None) -> pd.DataFrame:
    """Read a sales file as text columns, failing with a clear error when it is not a sales CSV at all."""
    path = Path(path)
    source = source or str(path)
    if path.stat().st_size == 0:
        raise SalesSchemaError(f"file {source} is empty; deliver a CSV with the header 'date,store,item,sales'")
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if b"\x00" in head:
        raise SalesSchemaError(f"file {source} is binary, not CSV text; deliver the sales export as UTF-8 CSV")
    try:
        header = head.decode("utf-8", errors="strict").splitlines()[0]
    except (UnicodeDecodeError, IndexError):
        raise SalesSchemaError(f"file {source} is not UTF-8 text; export it as UTF-8 CSV") from None
    columns = [c.strip().lower() for c in header.split(",")]
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise SalesSchemaError(
            f"file {source} line 1: missing column(s) {missing} in header {header[:200]!r}; "
            "the header must be 'date,store,item,sales'"
        )
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SalesSchemaError(f"file {source}: not a readable CSV ({exc}); re-export it as plain CSV") from None
    frame.columns = [c.strip().lower() for c in frame.columns]
    return frame


def validate_sales(raw: pd.DataFrame, source: str) -> ValidationResult:
    """Validate text rows of a sales file; every rejected row gets its file line number and a reason.

    Checks: required columns, date parses (YYYY-MM-DD), store and item are positive integers, sales is a
    non-negative integer, and no (date, store, item) key repeats inside the file.
    """
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise SalesSchemaError(
            f"file {source} line 1: missing column(s) {missing}; the header must be 'date,store,item,sales'"
        )
    frame = raw[list(COLUMNS)].astype(str).apply(lambda col: col.str.strip())
    line = pd.Series(np.arange(len(frame)) + 2, index=frame.index)  # line 1 is the header
    reason = pd.Series("", index=frame.index, dtype=object)

    def reject(mask: pd.Series, text: pd.Series | str) -> None:
        fresh = mask & (reason == "")
        reason[fresh] = text[fresh] if isinstance(text, pd.Series) else text

    date = pd.to_datetime(frame["date"], format="%Y-%m-%d", errors="coerce")
    reject(date.isna(), "date=" + frame["date"].map(repr) + " is not a date; write it as YYYY-MM-DD")
    for column in ("store", "item"):
        number = pd.to_numeric(frame[column], errors="coerce")
        bad = number.isna() | (number % 1 != 0) | (number < 1)
        reject(bad, f"{column}=" + frame[column].map(repr) + " is not a positive integer id")
    sales = pd.to_numeric(frame["sales"], errors="coerce")
    reject(sales.isna() | (sales % 1 != 0), "sales=" + frame["sales"].map(repr) + " is not an integer count")
    reject(sales < 0, "sales=" + frame["sales"].map(repr) + " is negative; returns belong in a separate feed")

    ok = reason == ""
    typed = pd.DataFrame(
        {
            "date": date,
            "store": pd.to_numeric(frame["store"], errors="coerce"),
            "item": pd.to_numeric(frame["item"], errors="coerce"),
            "sales": sales,
        }
    )
    duplicated = ok & typed.duplicated(subset=list(KEY), keep="first")
    first_line = (
        pd.DataFrame({"k": list(zip(typed["date"], typed["store"], typed["item"])), "line": line})
        .loc[ok]
        .drop_duplicates("k")
        .set_index("k")["line"]
    )
    if duplicated.any():
        keys = pd.Series(list(zip(typed["date"], typed["store"], typed["item"])), index=typed.index)
        dup_text = keys[duplicated].map(lambda k: f"duplicate of line {first_line[k]} for the same date, store and item")
        reject(duplicated, dup_text.reindex(reason.index, fill_value=""))
    ok = reason == ""

    accepted = typed.loc[ok].astype({"store": np.int64, "item": np.int64, "sales": np.int64}).reset_index(drop=True)
    rejected = raw.loc[~ok].copy()
    rejected.insert(0, "reason", reason[~ok].values)
    rejected.insert(0, "line", line[~ok].values)
    rejected.insert(0, "source", source)
    return ValidationResult(source=source, accepted=accepted, rejected=rejected.reset_index(drop=True))
