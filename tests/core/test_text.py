"""Which characters no free-text input may hold."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbnsec.core.text import (
    TYPED_WHITESPACE,
    has_control_characters,
    without_control_characters,
)


@pytest.mark.parametrize("text", ["\x00", "a\x1bb", "\u202e", "zero\u200bwidth", "\x7f", "\x85", "\ufeff", "\t", "\n"])
def test_control_and_invisible_characters_are_found(text):
    assert has_control_characters(text)


@pytest.mark.parametrize("text", ["", "Riverside Dental", "Café Zahnärzte", "歯科", "O'Brien & Sons", "a\u00a0b"])
def test_ordinary_text_passes(text):
    assert not has_control_characters(text)


def test_allowed_whitespace_is_allowed_only_where_said():
    assert not has_control_characters("line one\nline\ttwo", allowed="\n\t")
    assert has_control_characters("line one\r\nline two", allowed="\n\t")
    assert not has_control_characters("tab\tnew\nline\r", allowed=TYPED_WHITESPACE)
    assert has_control_characters("file\x1cseparator", allowed=TYPED_WHITESPACE)  # whitespace to str.split()


@given(st.text())
def test_taking_them_out_leaves_none(text):
    assert not has_control_characters(without_control_characters(text))
    assert not has_control_characters(without_control_characters(text, "\n"), "\n")
