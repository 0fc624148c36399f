"""driver/jsontext.py: the one check of whether bytes need a JSON escape, short and long alike."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memberlog.driver.jsontext import _MEMCHR_FROM, needs_json_escape

ESCAPED = [*b'"\\', *range(0x20)]
# Both ways of looking: under the size where memchr takes over, at it, and well past it.
SIZES = [1, 129, _MEMCHR_FROM - 1, _MEMCHR_FROM, 3 * _MEMCHR_FROM + 7]


@pytest.mark.parametrize("size", SIZES)
def test_clean_text_needs_no_escape(size):
    text = ("é漢 a/z~\x7f'" * size).encode()[:size]  # non-ASCII, DEL and ' stay as they are
    assert not needs_json_escape(text)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("byte", ESCAPED)
def test_each_byte_json_escapes_is_found_anywhere(size, byte):
    clean = b"x" * size
    for at in {0, size // 2, size - 1}:
        assert needs_json_escape(clean[:at] + bytes([byte]) + clean[at + 1 :]), (byte, at)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=_MEMCHR_FROM + 64))
def test_agrees_with_the_json_escaper(text):
    data = text.encode()
    same = json.encoder.encode_basestring(text) == f'"{text}"'
    assert needs_json_escape(data) is not same
    assert needs_json_escape(data * (_MEMCHR_FROM // max(1, len(data)) + 1)) is not same
