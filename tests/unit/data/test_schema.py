"""The sales reader: rows rejected with their line and a reason; whole-file errors name the file and the fix."""

import io
import zipfile

import pandas as pd
import pytest

from shelfcast.data.schema import load_sales, parse_range, read_raw, validate_sales
from shelfcast.contract.errors import SalesSchemaError

pytestmark = pytest.mark.unit

GOOD = "date,store,item,sales\n2017-06-01,1,1,13\n2017-06-01,1,2,7\n"


def _validate(tmp_path, text, name="sales.csv"):
    path = tmp_path / name
    path.write_text(text)
    return validate_sales(read_raw(path), source=name)


def test_good_rows_are_accepted_with_types(tmp_path):
    result = _validate(tmp_path, GOOD)
    assert len(result.accepted) == 2 and result.rejected.empty
    assert str(result.accepted["date"].dtype).startswith("datetime64")
    assert result.accepted["sales"].tolist() == [13, 7]


def test_each_bad_row_is_rejected_with_its_line_and_reason(tmp_path):
    text = (
        "date,store,item,sales\n"
        "2017-06-01,1,1,13\n"  # line 2 ok
        "2017-13-01,1,2,7\n"  # line 3 bad date
        "2017-06-01,1,3,-3\n"  # line 4 negative
        "2017-06-01,1,4,2.5\n"  # line 5 non-integer
        "2017-06-01,x,5,1\n"  # line 6 bad store
        "2017-06-01,1,1,14\n"  # line 7 duplicate of line 2
        "2017-06-01,1,6,\n"  # line 8 missing sales
    )
    result = _validate(tmp_path, text)
    assert result.accepted["item"].tolist() == [1]
    reasons = dict(zip(result.rejected["line"], result.rejected["reason"]))
    assert set(reasons) == {3, 4, 5, 6, 7, 8}
    assert "not a date" in reasons[3]
    assert "negative" in reasons[4]
    assert "not a whole number" in reasons[5]
    assert "store='x'" in reasons[6]
    assert "duplicate of line 2" in reasons[7]
    assert "sales=''" in reasons[8]
    assert (result.rejected["source"] == "sales.csv").all()
    assert result.rows_read == 7


def test_missing_column_names_the_file_and_the_header(tmp_path):
    with pytest.raises(SalesSchemaError, match=r"bad\.csv line 1: missing column\(s\) \['sales'\].*date,store,item,sales"):
        _validate(tmp_path, "date,store,item\n2017-01-01,1,1\n", name="bad.csv")


def test_empty_and_binary_files_are_refused_with_the_fix(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(SalesSchemaError, match="empty.csv is empty"):
        read_raw(empty)
    binary = tmp_path / "garbage.csv"
    binary.write_bytes(b"\x89PNG\x00\x01\x02" * 100)
    with pytest.raises(SalesSchemaError, match="binary"):
        read_raw(binary)


def test_load_sales_reads_a_zip_and_selects_series(tmp_path):
    bundle = tmp_path / "bundle.zip"
    frame = pd.DataFrame(
        {"date": ["2017-01-02", "2017-01-01", "2017-01-01"], "store": [1, 1, 2], "item": [1, 1, 1], "sales": [3, 2, 9]}
    )
    with zipfile.ZipFile(bundle, "w") as handle:
        handle.writestr("train.csv", frame.to_csv(index=False))
    loaded = load_sales(bundle, stores=[1])
    assert loaded["sales"].tolist() == [2, 3]  # sorted by date within the series
    with pytest.raises(SalesSchemaError, match="no rows"):
        load_sales(bundle, stores=[5])


def test_zip_without_train_csv_is_refused(tmp_path):
    bundle = tmp_path / "other.zip"
    with zipfile.ZipFile(bundle, "w") as handle:
        handle.writestr("test.csv", "a,b\n")
    with pytest.raises(SalesSchemaError, match="no train.csv"):
        load_sales(bundle)


@pytest.mark.parametrize(
    "text,expected",
    [("1-5", [1, 2, 3, 4, 5]), ("3", [3]), ("1-3,7,9-10", [1, 2, 3, 7, 9, 10]), ("all", None), (None, None)],
)
def test_parse_range(text, expected):
    assert parse_range(text) == expected


def test_parse_range_error_says_how_to_write_it():
    with pytest.raises(SalesSchemaError, match="write it like"):
        parse_range("5-1")
