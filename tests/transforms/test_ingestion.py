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
