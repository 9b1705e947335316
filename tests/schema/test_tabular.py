"""The CSV template: its layout, reading a CSV feed, writing one, and every way a CSV goes wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sqm.schema import GENERATED_DIR, tabular
from sqm.schema.tabular import TabularError
from tests.conftest import CSV_FEEDS, EXAMPLES, VALID_FEEDS, load_feed


def test_csv_example_reads_to_the_same_feed_as_its_yaml_twin() -> None:
    folder = EXAMPLES / "csv" / "food-ingredients"
    assert tabular.read_csv_feed(folder) == load_feed(EXAMPLES / "feeds" / "food-ingredients.yaml")


@pytest.mark.parametrize("path", VALID_FEEDS, ids=lambda p: p.name)
def test_write_then_read_round_trips(path: Path, tmp_path: Path) -> None:
    feed = load_feed(path)
    for name, text in tabular.write_csv_feed(feed).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert tabular.read_csv_feed(tmp_path) == feed


def test_committed_template_has_a_header_row_per_section() -> None:
    folder = GENERATED_DIR / "csv-template"
    files = {p.name for p in folder.glob("*.csv")}
    assert files == {tabular.section_file(s) for s in tabular.sections()}
    header = (folder / "capability_records.csv").read_text().splitlines()
    assert len(header) == 1
    columns = header[0].split(",")
    assert columns[0] == "id"
    assert {"cpk", "period.start", "assurance.level", "normality_test.p_value"} <= set(columns)


def _copy_example(tmp_path: Path) -> Path:
    target = tmp_path / "feed"
    shutil.copytree(CSV_FEEDS[0], target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_renamed_column_names_the_file_and_the_known_columns(tmp_path: Path) -> None:
    folder = _copy_example(tmp_path)
    _edit(folder / "delivery_records.csv", "on_time_percent", "on_time_pct")
    with pytest.raises(
        TabularError, match=r"delivery_records\.csv, line 1: unknown column\(s\) 'on_time_pct'"
    ):
        tabular.read_csv_feed(folder)


def test_number_with_a_decimal_comma_is_located(tmp_path: Path) -> None:
    folder = _copy_example(tmp_path)
    _edit(folder / "delivery_records.csv", ",94.8,", ",94;8,")
    with pytest.raises(TabularError, match=r"line 2, column 'on_time_percent': expected a number"):
        tabular.read_csv_feed(folder)


def test_extra_cells_are_refused(tmp_path: Path) -> None:
    folder = _copy_example(tmp_path)
    path = folder / "sites.csv"
    lines = path.read_text().splitlines()
    lines[1] += ",surplus"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TabularError, match=r"line 2: has .* cells but the header names"):
        tabular.read_csv_feed(folder)


def test_missing_header_file_and_empty_file(tmp_path: Path) -> None:
    folder = _copy_example(tmp_path)
    (folder / "feed.csv").unlink()
    with pytest.raises(TabularError, match=r"feed.csv: missing"):
        tabular.read_csv_feed(folder)
    (folder / "feed.csv").write_text("")
    with pytest.raises(TabularError, match=r"feed.csv: is empty"):
        tabular.read_csv_feed(folder)


def test_unknown_file_duplicate_column_and_bad_boolean(tmp_path: Path) -> None:
    folder = _copy_example(tmp_path)
    (folder / "notes.csv").write_text("a\n1\n")
    with pytest.raises(TabularError, match=r"notes.csv: is not a section"):
        tabular.read_csv_feed(folder)
    (folder / "notes.csv").unlink()
    _edit(folder / "sites.csv", "id,", "id,id,")
    with pytest.raises(TabularError, match=r"column 'id': column appears twice"):
        tabular.read_csv_feed(folder)


def test_bom_and_missing_cells_are_accepted(tmp_path: Path) -> None:
    folder = _copy_example(tmp_path)
    path = folder / "products.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert tabular.read_csv_feed(folder)["products"][0]["id"] == "prod-bp-ground"


def test_latin1_file_is_reported_not_crashed(tmp_path: Path) -> None:
    folder = _copy_example(tmp_path)
    (folder / "sites.csv").write_bytes("id,name\nsite-1,Binh D\xfcong\n".encode("latin-1"))
    with pytest.raises(TabularError, match=r"sites\.csv, line 2: is not UTF-8: byte 0xfc"):
        tabular.read_csv_feed(folder)


def test_too_many_list_entries_for_the_template_is_refused() -> None:
    feed = load_feed(VALID_FEEDS[0])
    feed["sites"][0]["identifiers"] = [{"scheme": "GLN", "code": "4001234000008"}] * 3
    with pytest.raises(TabularError, match=r"identifiers has 3 entries"):
        tabular.write_csv_feed(feed)


def test_reference_page_lists_every_column() -> None:
    page = tabular.template_reference()
    for section, columns in tabular.sections().items():
        assert f"## `{tabular.section_file(section)}`" in page
        for column in columns:
            assert f"| `{column.name}` |" in page


def test_records_are_located_at_their_first_line_even_after_a_multiline_cell(
    tmp_path: Path,
) -> None:
    path = tmp_path / "products.csv"
    path.write_text('id,name\nprod-1,"Black pepper,\nground"\nprod-2,Cassava starch\n')
    items = list(tabular.read_section(path, "products"))
    assert [row for row, _ in items] == [2, 4]
    assert items[0][1]["name"] == "Black pepper,\nground"


def test_a_huge_exponent_is_refused_quickly(tmp_path: Path) -> None:
    folder = _copy_example(tmp_path)
    _edit(folder / "delivery_records.csv", ",94.8,", ",1E+99999999,")
    with pytest.raises(TabularError, match="within the range of a double"):
        tabular.read_csv_feed(folder)
