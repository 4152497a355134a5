"""An uploaded file read back as lines: split as `csv` wants them whatever the chunk
boundaries, with the byte offset a resumed import starts from."""

from __future__ import annotations

import io

import pytest

from sms_core.adapters.upload_store import LineSource

TEXT = 'phone,name\r\n+14255550100,Ann\r+14255550101,"Bo\r\nB"\n\n+14255550102,Cé\r\nlast\r'


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 1024])
def test_lines_are_those_of_a_text_file_opened_with_newline_empty(size: int) -> None:
    data = TEXT.encode()
    source = LineSource(iter(chunked(data, size)))
    assert list(source) == list(io.StringIO(TEXT, newline=""))
    assert source.offset == len(data)


def test_the_offset_after_a_line_is_where_the_rest_of_the_file_starts() -> None:
    data = TEXT.encode()
    source = LineSource(iter(chunked(data, 4)))
    head = [next(source), next(source)]
    rest = list(LineSource(iter(chunked(data[source.offset:], 7)), source.offset))
    assert head + rest == list(io.StringIO(TEXT, newline=""))


def test_bytes_that_are_not_utf8_raise_at_their_line() -> None:
    source = LineSource(iter([b"phone\n+14255550100\n\xff\xfe\n"]))
    assert [next(source), next(source)] == ["phone\n", "+14255550100\n"]
    with pytest.raises(UnicodeDecodeError):
        next(source)
