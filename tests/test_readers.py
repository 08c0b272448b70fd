"""Reading .txt/.md/.html/.pdf, encodings, and files that must be skipped."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from index_build import readers
from tests.conftest import bench_path


def test_latin1_bbc_file_is_detected_and_decoded() -> None:
    got = readers.read(bench_path("bbc", "sport", "199.txt"))
    assert got.encoding == "cp1252"
    assert "£15.8m" in got.text or "£" in got.text
    assert "\ufffd" not in got.text


def test_cp1252_smart_quotes(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes("Prices \u201csoared\u201d to \u20ac5 \u2013 a record.".encode("cp1252"))
    got = readers.read(p)
    assert got.text == "Prices \u201csoared\u201d to \u20ac5 \u2013 a record." and got.encoding == "cp1252"


def test_utf8_bom_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes(b"\xef\xbb\xbfTitle\r\n\r\nBody text here.\r\n")
    assert readers.read(p).text == "Title\n\nBody text here.\n"


def test_non_latin_legacy_encoding(tmp_path: Path) -> None:
    p = tmp_path / "ru.txt"
    text = "Президент провёл переговоры в Москве. Встреча длилась час. " * 5
    p.write_bytes(text.encode("koi8_r"))
    assert readers.read(p).text == text


def test_html_keeps_article_text_only(tmp_path: Path) -> None:
    p = tmp_path / "page.html"
    p.write_text(
        "<html><head><title>Floods hit the valley</title><style>.x{color:red}</style>"
        "<script>var secret = 'SCRIPTTEXT';</script></head><body>"
        "<nav><a href='/'>NAVHOME</a> | <a href='/world'>NAVWORLD</a></nav>"
        "<article><h1>Floods hit the valley</h1><p>Heavy rain caused floods across the valley on Monday. "
        "About 1,500 people were evacuated.</p><p>Officials said the water would recede by Friday.</p></article>"
        "<footer>FOOTERCOPYRIGHT 2024</footer></body></html>",
        encoding="utf-8",
    )
    got = readers.read(p)
    assert "About 1,500 people were evacuated." in got.text
    assert "Officials said the water would recede by Friday." in got.text
    for junk in ("SCRIPTTEXT", "color:red", "NAVHOME", "FOOTERCOPYRIGHT"):
        assert junk not in got.text
    assert got.title == "Floods hit the valley"


def test_markdown_to_text(tmp_path: Path) -> None:
    p = tmp_path / "a.md"
    p.write_text(
        "# Storm warning\n\nWinds of **90 mph** hit [the coast](http://x) on *Tuesday*.\n\n- Schools closed.\n",
        encoding="utf-8",
    )
    got = readers.read(p).text
    assert got == "Storm warning\n\nWinds of 90 mph hit the coast on Tuesday.\n\nSchools closed."


def _pdf(path: Path, lines: list[str] | None) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    if lines:
        pdf.set_font("Helvetica", size=12)
        for line in lines:
            pdf.multi_cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    else:
        pdf.rect(20, 20, 100, 60, style="F")  # a "scan": graphics, no text layer
    pdf.output(str(path))


def test_pdf_text_layer(tmp_path: Path) -> None:
    p = tmp_path / "report.pdf"
    _pdf(p, ["Quarterly report", "", "Revenue rose 12 percent in the third quarter. The board met on Tuesday."])
    got = readers.read(p)
    assert "Revenue rose 12 percent in the third quarter." in got.text
    assert got.encoding == "pdf"


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("empty.txt", b"", "empty file"),
        ("blank.txt", b"   \n\n  ", "no text"),
        ("archive.txt", None, "binary"),
        ("image.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "binary"),
        ("notes.odt", b"whatever", "unsupported file type"),
        ("notes.docx", b"whatever", "not a readable .docx"),
        ("scan.pdf", "pdf-no-text", "no text layer"),
        ("broken.pdf", b"%PDF-1.4\n garbage garbage", "PDF"),
    ],
)
def test_unreadable_files_say_why(tmp_path: Path, name: str, data, reason: str) -> None:
    p = tmp_path / name
    if data is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("a.txt", "hello " * 100)
        p.write_bytes(buf.getvalue())
    elif data == "pdf-no-text":
        _pdf(p, None)
    else:
        p.write_bytes(data)
    with pytest.raises(readers.Unreadable) as e:
        readers.read(p)
    assert reason in str(e.value)
