"""Delivery files become one bronze line per record, with exact 1-based line numbers."""

from compliance_assets.transforms.ingestion import file_lines


def test_file_lines_keep_every_record_line_and_its_number(spark, tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"x":1}\r\n{"x":2}\n\n{"x":4}\n')  # CRLF, a blank record line, final newline
    (tmp_path / "b.jsonl").write_bytes(b'{"y":1}\n{"y":2}')  # no final newline
    (tmp_path / "c.jsonl").write_bytes(b"")  # an empty delivery file holds no record
    (tmp_path / "ignored.txt").write_bytes(b"not a delivery\n")
    rows = sorted((r.source_file.rsplit("/", 1)[-1], r.source_line, r.line) for r in file_lines(spark, str(tmp_path), "*.jsonl*").collect())
    assert rows == [
        ("a.jsonl", 1, '{"x":1}'), ("a.jsonl", 2, '{"x":2}'), ("a.jsonl", 3, ""), ("a.jsonl", 4, '{"x":4}'),
        ("b.jsonl", 1, '{"y":1}'), ("b.jsonl", 2, '{"y":2}'),
    ]


def test_lines_keep_their_original_bytes_and_each_file_its_raw_line_count(spark, tmp_path):
    """A line that is not UTF-8 keeps its bytes; a bare CR stays inside its line (it does not split it);
    every row carries its file's line count from the raw bytes."""
    data = b'{"a":1}\n{"b":"\xff\xfe"}\r\n\xef\xbb\xbf{"c":1}\n{"a":1}\r{"b":2}'
    (tmp_path / "a.jsonl").write_bytes(data)
    rows = {r.source_line: r for r in file_lines(spark, str(tmp_path), "*.jsonl*").collect()}
    assert sorted(rows) == [1, 2, 3, 4] and {r.file_lines for r in rows.values()} == {4}
    assert rows[2].line_bytes == b'{"b":"\xff\xfe"}' and rows[2].line == '{"b":"\ufffd\ufffd"}'
    assert [rows[n].line_bytes for n in (1, 3, 4)] == [None, None, None]
    assert rows[3].line == '\ufeff{"c":1}' and rows[4].line == '{"a":1}\r{"b":2}'
