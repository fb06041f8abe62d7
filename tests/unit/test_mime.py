"""MIME types of artifacts: libmagic, with the extension where libmagic is vague."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multiflexi.artifacts.mime import detect_mime

PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< >>\n%%EOF\n"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("data.json", b'{"a": [1, 2, 3]}', "application/json"),
        ("data.json", b"not really json", "application/json"),
        ("table.csv", b"a,b,c\n1,2,3\n", "text/csv"),
        ("table.csv", b"int main() { return 0; }\n", "text/csv"),
        ("doc.xml", b'<?xml version="1.0"?><a/>', "application/xml"),
        ("invoice.isdoc", b'<?xml version="1.0"?><Invoice/>', "application/xml"),
        ("page.html", b"<html><body>x</body></html>", "text/html"),
        ("README.md", b"# Title\n\nSome *text*.\n", "text/markdown"),
        ("conf.yaml", b"key: value\n", "application/yaml"),
        ("notes.txt", b"plain words\n", "text/plain"),
        ("run.log", b"2024-01-01 started\n", "text/plain"),
        ("report.pdf", PDF, "application/pdf"),
        ("REPORT.PDF", PDF, "application/pdf"),
        ("binary.txt", b"\x00\x01\x02\xff" * 10, "text/plain"),
        ("image.png", PNG, "image/png"),
        ("image.txt", PNG, "image/png"),
        ("mystery", b"\x00\x01\x02\xff" * 10, "application/octet-stream"),
    ],
)
def test_content_and_name_together_give_the_type(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert detect_mime(path) == expected
    assert detect_mime(head=content, filename=name) == expected
    assert detect_mime(tmp_path / "other", head=content, filename=name) == expected


def test_an_empty_file_is_x_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    assert detect_mime(path) == "application/x-empty"
    assert detect_mime(head=b"", filename="empty.bin") == "application/x-empty"


def test_an_unreadable_file_does_not_raise(tmp_path: Path) -> None:
    assert detect_mime(tmp_path / "missing.bin") == "application/octet-stream"
    assert detect_mime(tmp_path / "missing.csv") == "text/csv"
    assert detect_mime() == "application/octet-stream"
    assert detect_mime(filename="x.json") == "application/json"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission_does_not_raise(tmp_path: Path) -> None:
    path = tmp_path / "secret.dat"
    path.write_bytes(b"data")
    path.chmod(0)
    assert detect_mime(path) == "application/octet-stream"


def test_libmagic_failing_falls_back_to_the_extension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import magic

    def broken(*args: object, **kwargs: object) -> str:
        raise magic.MagicException("no magic database")

    monkeypatch.setattr(magic, "from_buffer", broken)
    assert detect_mime(head=b"{}", filename="a.json") == "application/json"
    assert detect_mime(head=b"{}", filename="a.unknown") == "application/octet-stream"
