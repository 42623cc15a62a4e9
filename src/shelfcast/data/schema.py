"""The sales schema (`date,store,item,sales`), a fast loader for trusted history and a validating reader.

`load_sales` reads the Kaggle bundle (a CSV, or a zip holding `train.csv`) for training and benchmarks.
`validate_sales` checks every row of an untrusted file and splits it into accepted rows and rejected rows,
each rejected row carrying the reason. `read_sales_stream` is what ingest uses: the same checks, block by block,
with memory bounded by the accepted rows' numbers instead of the file's text.
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
DEFAULT_MAX_SALES = 1_000_000  # units of one item sold by one store in one day; above it is an export error
MAX_DIGITS = 18  # every integer of up to 18 digits fits int64 exactly
MAX_ID = 2**31 - 1  # store and item ids; larger numbers are another column (a barcode, an amount)
BOM = "\ufeff"


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
    _checked_header(path, source)
    try:
        # utf-8-sig: a UTF-8 byte order mark (what Excel writes first) is not part of the first column's name
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SalesSchemaError(f"file {source}: not a readable CSV ({exc}); re-export it as plain CSV") from None
    frame.columns = [c.strip().lower() for c in frame.columns]
    return frame


def exact_integers(text: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Whole numbers written in digits as int64, never through a float (which rounds above 2**53 and wraps
    above 2**63). Returns the values (0 where invalid) and the mask of texts that are not such a number:
    empty, signed negative, an exponent, a fraction other than `.0`, or more than `MAX_DIGITS` digits."""
    digits = text.str.extract(r"^\+?(\d{1,%d})(?:\.0*)?$" % MAX_DIGITS, expand=False)
    bad = digits.isna()
    values = np.zeros(len(text), dtype=np.int64)
    if (~bad).any():
        values[~bad.to_numpy()] = digits[~bad].to_numpy(dtype=str).astype(np.int64)
    return values, bad


def validate_sales(raw: pd.DataFrame, source: str, max_sales: int = DEFAULT_MAX_SALES) -> ValidationResult:
    """Validate text rows of a sales file; every rejected row gets its file line number and a reason.

    Checks: required columns, date parses (YYYY-MM-DD), store and item are positive integers, sales is a
    whole number from 0 to `max_sales` parsed exactly, and no (date, store, item) key repeats inside the file.
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
    store, bad_store = exact_integers(frame["store"])
    reject(bad_store | (store < 1) | (store > MAX_ID),
           "store=" + frame["store"].map(repr) + f" is not a positive integer id up to {MAX_ID:,}")
    item, bad_item = exact_integers(frame["item"])
    reject(bad_item | (item < 1) | (item > MAX_ID),
           "item=" + frame["item"].map(repr) + f" is not a positive integer id up to {MAX_ID:,}")
    sales, bad_sales = exact_integers(frame["sales"])
    negative = frame["sales"].str.fullmatch(r"-\d+(\.0*)?")
    reject(negative, "sales=" + frame["sales"].map(repr) + " is negative; returns belong in a separate feed")
    too_long = frame["sales"].str.fullmatch(r"\+?\d{%d,}(\.0*)?" % (MAX_DIGITS + 1))
    reject(too_long | (~bad_sales & (sales > max_sales)),
           "sales=" + frame["sales"].map(repr) + f" is above the plausible maximum of {max_sales:,} units a day; "
           "check the export (an overflow or a wrong column), or raise the maximum (--max-sales) if it is real")
    reject(bad_sales, "sales=" + frame["sales"].map(repr)
           + " is not a whole number written in digits (no exponent, no fraction); write the count like 12")

    ok = reason == ""
    typed = pd.DataFrame({"date": date, "store": store, "item": item, "sales": sales})
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


@dataclass(frozen=True)
class StreamedSales:
    """A sales file read block by block: accepted rows in compact columns, rejected rows with reasons."""

    source: str
    accepted: pd.DataFrame  # date (datetime64[s]), store, item, line (int32), sales (`sales_dtype`)
    rejected: pd.DataFrame  # source, line, reason, date, store, item, sales (text as delivered)
    rows_read: int


INTEGER_TEXT = r"^\+?\d{1,%d}(\.0*)?$" % MAX_DIGITS


def read_sales_stream(path: str | Path, source: str | None = None, max_sales: int = DEFAULT_MAX_SALES,
                      block_bytes: int = 4 << 20) -> StreamedSales:
    """Read and validate a sales file in blocks of `block_bytes` with Arrow's CSV reader.

    Memory holds one block at a time plus the accepted rows as 5 numeric columns (24 bytes a row: the date as
    datetime64[s], store, item and line as int32, sales as int32 unless `max_sales` needs int64). First Arrow
    parses the columns as dates and 64-bit integers itself (exact, no float; a value it cannot parse, such as `1e12` or a 20-digit number, ends that attempt); a file it refuses is read again as
    text, where each block's rows that the fast checks pass become numbers from their digits and the others go
    through `validate_sales` for their reason. Keys repeated inside the file are found once it is all read.
    """
    import pyarrow as pa

    path = Path(path)
    source = source or str(path)
    header = _checked_header(path, source)
    names = {c.strip().lower(): c for c in header}
    try:
        return _read_blocks(path, source, names, max_sales, block_bytes, typed=True)
    except pa.ArrowInvalid:
        return _read_blocks(path, source, names, max_sales, block_bytes, typed=False)


def _read_blocks(path: Path, source: str, names: dict[str, str], max_sales: int, block_bytes: int,
                 typed: bool) -> StreamedSales:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv

    types = {names[c]: pa.string() for c in COLUMNS}
    if typed:
        types.update({names["date"]: pa.date32(), names["store"]: pa.int64(), names["item"]: pa.int64(),
                      names["sales"]: pa.int64()})
    try:
        reader = pv.open_csv(
            path, read_options=pv.ReadOptions(block_size=block_bytes),
            convert_options=pv.ConvertOptions(column_types=types, include_columns=[names[c] for c in COLUMNS],
                                              strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        if typed and isinstance(exc, pa.ArrowInvalid):
            raise  # the first block holds a value Arrow's parser refuses: read as text
        raise SalesSchemaError(f"file {source}: not a readable CSV ({exc}); re-export it as plain CSV") from None
    # Accepted rows go straight into arrays sized for the most rows the file can hold (a valid row has at least
    # 17 bytes): untouched pages of np.empty are never resident, and no per-block pieces are joined at the end.
    capacity = path.stat().st_size // 17 + 1
    out = {"date": np.empty(capacity, np.int64), "store": np.empty(capacity, np.int32),
           "item": np.empty(capacity, np.int32), "sales": np.empty(capacity, sales_dtype(max_sales)),
           "line": np.empty(capacity, np.int32 if capacity < 2**31 - 2 else np.int64)}
    filled = 0
    reordered = False

    def keep(date_s, store, item, sales, line) -> None:
        nonlocal filled
        n = len(line)
        for name, values in (("date", date_s), ("store", store), ("item", item), ("sales", sales), ("line", line)):
            out[name][filled:filled + n] = values
        filled += n

    rejected: list[pd.DataFrame] = []
    rows_read = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            if typed and isinstance(exc, pa.ArrowInvalid):
                raise  # a value Arrow's parser refuses: read as text, where each row gets its reason
            raise SalesSchemaError(f"file {source} after line {rows_read + 1}: not a readable CSV ({exc}); "
                                   "re-export it as plain CSV") from None
        pa.default_memory_pool().release_unused()  # the last block's buffers, which the pool would keep
        lines = np.arange(rows_read, rows_read + batch.num_rows, dtype=np.int64) + 2  # line 1 is the header
        rows_read += batch.num_rows
        if typed:
            day = pc.cast(batch.column(names["date"]), pa.timestamp("s"))
            ok = pc.is_valid(day)
            values = {}
            for column in ("store", "item", "sales"):
                array = batch.column(names[column])
                ok = pc.and_(ok, pc.is_valid(array))
                values[column] = array.fill_null(0).to_numpy()
            good = ok.to_numpy(zero_copy_only=False)
            text = None  # written out only for the rows that fail a check, below
        else:
            text = {c: pc.utf8_trim_whitespace(batch.column(names[c])) for c in COLUMNS}
            day = pc.strptime(text["date"], format="%Y-%m-%d", unit="s", error_is_null=True)
            ok = pc.and_(pc.is_valid(day), pc.match_substring_regex(text["date"], r"^\d{4}-\d{2}-\d{2}$"))
            for column in ("store", "item", "sales"):
                ok = pc.and_(ok, pc.match_substring_regex(text[column], INTEGER_TEXT))
            good = ok.to_numpy(zero_copy_only=False)
            values = {c: _digits_to_int64(text[c], good) for c in ("store", "item", "sales")}
        good &= ((values["store"] >= 1) & (values["store"] <= MAX_ID) & (values["item"] >= 1)
                 & (values["item"] <= MAX_ID) & (values["sales"] >= 0) & (values["sales"] <= max_sales))
        if not good.all():
            bad = np.flatnonzero(~good)
            if text is None:
                text = {c: pc.cast(batch.column(names[c]).take(pa.array(bad)), pa.string()).fill_null("")
                        for c in COLUMNS}
                frame = pd.DataFrame({c: text[c].to_numpy(zero_copy_only=False) for c in COLUMNS})
            else:
                frame = pd.DataFrame({c: text[c].take(pa.array(bad)).to_numpy(zero_copy_only=False) for c in COLUMNS})
            checked = validate_sales(frame, source, max_sales=max_sales)
            # validate_sales numbers its rows from line 2: map them back to this block's lines. Rows it accepts
            # although the fast checks did not (a date like 2017-1-2) are taken as it parsed them.
            position = checked.rejected["line"].to_numpy() - 2
            checked.rejected["line"] = lines[bad][position]
            rejected.append(checked.rejected)
            rescued = np.setdiff1d(np.arange(len(frame)), position)
            if len(rescued):
                reordered = True
                keep(checked.accepted["date"].to_numpy().astype("datetime64[s]").astype(np.int64),
                     *(checked.accepted[c].to_numpy(np.int64) for c in ("store", "item", "sales")), lines[bad][rescued])
        day_values = day.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        keep(day_values[good], values["store"][good], values["item"][good], values["sales"][good], lines[good])
    columns = {name: values[:filled] for name, values in out.items()}
    if reordered:  # rescued rows were kept after their block: put every row back in line order
        order = np.argsort(columns["line"], kind="stable")
        columns = {name: values[order] for name, values in columns.items()}
        del order
    keys = KeyCells(columns["date"], columns["store"], columns["item"])
    first = first_of_each_key(keys)
    if not first.all():
        repeats = np.flatnonzero(~first)
        origin = first_lines_of(keys, first, columns["line"])
        dups = {name: values[repeats] for name, values in columns.items()}
        rejected.append(pd.DataFrame({
            "source": source, "line": dups["line"].astype(np.int64),
            "reason": [f"duplicate of line {o} for the same date, store and item" for o in origin],
            "date": np.datetime_as_string(dups["date"].astype("datetime64[s]"), unit="D"),
            "store": dups["store"].astype(str), "item": dups["item"].astype(str), "sales": dups["sales"].astype(str)}))
        columns = keep_rows(columns, first)
    del keys
    columns["date"] = columns["date"].view("datetime64[s]")
    accepted = pd.DataFrame(columns, copy=False)
    rejected_frame = (pd.concat(rejected, ignore_index=True).sort_values("line").reset_index(drop=True) if rejected
                      else pd.DataFrame(columns=["source", "line", "reason", *COLUMNS]))
    return StreamedSales(source, accepted, rejected_frame, rows_read)


def _checked_header(path: Path, source: str) -> list[str]:
    """The header's column names, after the checks that make a file no sales CSV at all."""
    if path.stat().st_size == 0:
        raise SalesSchemaError(f"file {source} is empty; deliver a CSV with the header 'date,store,item,sales'")
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if b"\x00" in head:
        raise SalesSchemaError(f"file {source} is binary, not CSV text; deliver the sales export as UTF-8 CSV")
    try:
        text = head.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a character cut by the 4 KiB boundary is not an encoding problem
            raise SalesSchemaError(f"file {source} is not UTF-8 text; export it as UTF-8 CSV") from None
        text = head[: exc.start].decode("utf-8")
    lines = text.removeprefix(BOM).splitlines()
    if not lines:
        raise SalesSchemaError(f"file {source} is not UTF-8 text; export it as UTF-8 CSV")
    header = lines[0]
    columns = [c.strip().lower() for c in header.split(",")]
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise SalesSchemaError(
            f"file {source} line 1: missing column(s) {missing} in header {header[:200]!r}; "
            "the header must be 'date,store,item,sales'"
        )
    return header.split(",")


def _digits_to_int64(text, mask: np.ndarray) -> np.ndarray:
    """Integers written in digits (checked by `INTEGER_TEXT` where `mask`) as int64, parsed exactly."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = np.zeros(len(text), dtype=np.int64)
    if mask.any():
        digits = pc.replace_substring_regex(pc.filter(text, pa.array(mask)), r"^\+|\.0*$", "")
        values[mask] = pc.cast(digits, pa.int64()).to_numpy()
    return values


def sales_dtype(max_sales: int):
    """The narrowest integer type holding every sales value up to `max_sales`."""
    return np.int32 if max_sales <= np.iinfo(np.int32).max else np.int64


BLOCK_ROWS = 1 << 20


def blocks(rows: int, size: int = BLOCK_ROWS):
    """(start, stop) of consecutive row blocks: whole-column temporaries are built one block at a time."""
    for start in range(0, rows, size):
        yield start, min(rows, start + size)


def pack_series(store: np.ndarray, item: np.ndarray) -> np.ndarray:
    """(store, item) as one int64 per row, store * 2**32 + item, sorting as the pair does (ids below 2**31)."""
    return (np.asarray(store).astype(np.int64, copy=False) << 32) | np.asarray(item).astype(np.int64, copy=False)


class KeyCells:
    """Each (date, store, item) key of a file as one int64 cell: series index x days + day offset.

    Series are numbered densely among the file's own (store, item) pairs and days from its first day, so a
    cell is exact and small, and the whole file's keys fit a table of `cells` flags when the file is dense
    (as daily exports and histories are: every series on most days). `seconds` is the date in Unix seconds."""

    def __init__(self, seconds: np.ndarray, store: np.ndarray, item: np.ndarray, size: int = BLOCK_ROWS):
        self.seconds, self.store, self.item, self.size, self.rows = seconds, store, item, size, len(seconds)
        series = [np.unique(self.series(start, stop)) for start, stop in blocks(self.rows, size)]
        self.known = np.unique(np.concatenate(series)) if series else np.zeros(0, np.int64)
        self.first_day = int(seconds.min()) // 86400 if self.rows else 0
        self.days = int(seconds.max()) // 86400 - self.first_day + 1 if self.rows else 0
        self.cells = len(self.known) * self.days

    def series(self, start: int, stop: int) -> np.ndarray:
        return pack_series(self.store[start:stop], self.item[start:stop])

    def of(self, start: int, stop: int) -> np.ndarray:
        index = np.searchsorted(self.known, self.series(start, stop))
        return index * self.days + (self.seconds[start:stop] // 86400 - self.first_day)


def first_of_each_key(keys: KeyCells) -> np.ndarray:
    """True for the first row of every (date, store, item) key, False for later repeats (file order).

    A dense file marks each key's cell in a table of flags, block by block (one byte per cell, about one cell a
    row); a sparse file, whose table would be much larger than its rows, sorts its cells instead."""
    first = np.ones(keys.rows, dtype=bool)
    if keys.rows < 2:
        return first
    if keys.cells <= 4 * keys.rows + (1 << 20):
        seen = np.zeros(keys.cells, dtype=bool)
        for start, stop in blocks(keys.rows, keys.size):
            cell = keys.of(start, stop)
            unique, at = np.unique(cell, return_index=True)  # stable: `at` is each cell's first row
            block_first = np.zeros(len(cell), dtype=bool)
            block_first[at] = True
            first[start:stop] = block_first & ~seen[cell]
            seen[unique] = True
        return first
    cell = np.concatenate([keys.of(start, stop) for start, stop in blocks(keys.rows, keys.size)])
    order = np.argsort(cell, kind="stable")  # equal keys keep file order
    cell = cell[order]
    repeat = np.flatnonzero(cell[1:] == cell[:-1]) + 1
    first[order[repeat]] = False
    return first


def first_lines_of(keys: KeyCells, first: np.ndarray, lines: np.ndarray) -> list[int]:
    """For each repeated row (False in `first`, in row order) the line of its key's first row."""
    wanted = np.concatenate([keys.of(start, stop)[~first[start:stop]] for start, stop in blocks(keys.rows, keys.size)])
    line_of: dict[int, int] = {}
    for start, stop in blocks(keys.rows, keys.size):
        cell = keys.of(start, stop)
        hit = first[start:stop] & np.isin(cell, wanted)
        line_of.update(zip(cell[hit].tolist(), lines[start:stop][hit].tolist()))
    return [line_of[c] for c in wanted.tolist()]


def keep_rows(columns: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """The rows where `mask`, moved to the front of each column in place: one column's temporary at a time,
    never a second copy of every column."""
    kept = int(mask.sum())
    for name, values in columns.items():
        values[:kept] = values[mask]
        columns[name] = values[:kept]
    return columns
