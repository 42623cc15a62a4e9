"""Tomorrow's forecast per item on the store device, from a raw recent-sales CSV (numpy and the standard library).

The CSV has the training schema, `date,store,item,sales`, one row per day and item. For every series the last
`lookback` days (from the model's manifest) must be present and end on the file's last date; the inputs are built
by `shelfcast.contract.features.build_inputs` with the manifest's input specification, exactly as in training, and the
model's output is scaled back to units of sales. A series that cannot be forecast is skipped with the reason;
the others are still forecast.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shelfcast.device.sync import serving_model
from shelfcast.contract.runtime import TFLiteForecaster
from shelfcast.contract.errors import SalesSchemaError
from shelfcast.contract.features import InputSpec, build_inputs

COLUMNS = ("date", "store", "item", "sales")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Forecast:
    store: int
    item: int
    date: str  # the day forecast (the day after the file's last date)
    sales: float


@dataclass
class ForecastReport:
    version: str
    forecasts: list[Forecast] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    note: str | None = None

    def to_csv(self) -> str:
        lines = ["date,store,item,forecast,model_version"]
        lines += [f"{f.date},{f.store},{f.item},{f.sales:.3f},{self.version}" for f in self.forecasts]
        return "\n".join(lines) + "\n"


Series = dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]


def _positive_int(text: str, column: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SalesSchemaError(f"{where}: {column}={text!r} is not a whole number") from None
    if value <= 0:
        raise SalesSchemaError(f"{where}: {column}={text!r} must be positive")
    return value


def read_recent_sales(path: str | Path, store_id: int | None = None) -> Series:
    """Series (store, item) -> (dates as datetime64[D], sales), sorted by date; raises `SalesSchemaError` naming
    the file, the line and the fix for anything that is not clean sales data."""
    path = Path(path)
    if not path.exists():
        raise SalesSchemaError(f"file {path} does not exist; pass --sales with the store's recent sales CSV")
    rows: dict[tuple[int, int], dict[np.datetime64, float]] = {}
    seen: dict[tuple, int] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [c.strip().lower() for c in next(reader, [])]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise SalesSchemaError(f"file {path} line 1: missing column(s) {missing}; the header must be "
                                       "'date,store,item,sales'")
            index = {c: header.index(c) for c in COLUMNS}
            for line_no, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                where = f"file {path} line {line_no}"
                if len(row) < len(header):
                    raise SalesSchemaError(f"{where}: {len(row)} fields, the header has {len(header)}")
                date_text, sales_text = row[index["date"]].strip(), row[index["sales"]].strip()
                if not _DATE.match(date_text):
                    raise SalesSchemaError(f"{where}: date={date_text!r} is not a date; write it as YYYY-MM-DD")
                try:
                    date = np.datetime64(date_text, "D")
                except ValueError:
                    raise SalesSchemaError(f"{where}: date={date_text!r} is not a calendar date") from None
                store = _positive_int(row[index["store"]].strip(), "store", where)
                item = _positive_int(row[index["item"]].strip(), "item", where)
                try:
                    sales = float(sales_text)
                except ValueError:
                    raise SalesSchemaError(f"{where}: sales={sales_text!r} is not a number") from None
                if not math.isfinite(sales) or sales < 0:
                    raise SalesSchemaError(f"{where}: sales={sales_text!r} must be a non-negative number")
                if store_id is not None and store != store_id:
                    continue
                key = (date, store, item)
                if key in seen:
                    raise SalesSchemaError(f"{where}: store {store} item {item} on {date_text} already appears on "
                                           f"line {seen[key]}; keep one row per day and item")
                seen[key] = line_no
                rows.setdefault((store, item), {})[date] = sales
    except UnicodeDecodeError:
        raise SalesSchemaError(f"file {path} is not UTF-8 text; export it as UTF-8 CSV") from None
    if not rows:
        which = f" for store {store_id}" if store_id is not None else ""
        raise SalesSchemaError(f"file {path} has no sales rows{which}")
    series = {}
    for key, by_date in rows.items():
        dates = np.array(sorted(by_date), dtype="datetime64[D]")
        series[key] = (dates, np.array([by_date[d] for d in dates], dtype=np.float64))
    return series


def tomorrow_inputs(series: Series, lookback: int):
    """Raw windows, their dates and keys of every series that has its last `lookback` days, plus reasons for the
    series that do not. The forecast day is the day after the file's last date."""
    last = max(dates[-1] for dates, _ in series.values())
    wanted = np.arange(last - lookback + 1, last + 1, dtype="datetime64[D]")
    keys, raw, skipped = [], [], []
    for (store, item), (dates, sales) in sorted(series.items()):
        if dates[-1] != last:
            skipped.append(f"store {store} item {item}: last row is {dates[-1]} but the file runs to {last}; "
                           "deliver the missing days")
            continue
        position = np.searchsorted(dates, wanted)
        present = (position < len(dates)) & (dates[np.minimum(position, len(dates) - 1)] == wanted)
        if not present.all():
            gaps = wanted[~present]
            skipped.append(f"store {store} item {item}: {len(gaps)} of the last {lookback} days missing "
                           f"(first {gaps[0]}); the model needs every day")
            continue
        keys.append((store, item))
        raw.append(sales[position])
    dates = np.tile(wanted, (len(keys), 1))
    return keys, np.array(raw, dtype=np.float64).reshape(len(keys), lookback), dates, str(last + 1), skipped


def forecast_series(series: Series, forecaster: TFLiteForecaster, spec: InputSpec, version: str) -> ForecastReport:
    keys, raw, dates, day, skipped = tomorrow_inputs(series, spec.lookback)
    report = ForecastReport(version, skipped=skipped)
    if keys:
        sales = spec.unscale(forecaster.predict(build_inputs(raw, dates, spec)), raw, dates)
        report.forecasts = [Forecast(s, i, day, float(v)) for (s, i), v in zip(keys, sales)]
    return report


def predict_store(directory: str | Path, sales_path: str | Path, store_id: int | None = None) -> ForecastReport:
    """Forecast tomorrow for every item in the sales file with the store's serving model."""
    forecaster, manifest, note = serving_model(directory)
    report = forecast_series(read_recent_sales(sales_path, store_id), forecaster,
                             InputSpec.from_dict(manifest.input_spec), manifest.version)
    report.note = note
    return report
