"""smsgate.jsonscan.loads answers what json.loads answers, value or error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgate import jsonscan

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _JSON, max_size=6), st.sampled_from(["", " ", "\n\t \r"]))
def test_an_object_reads_as_json_loads_reads_it(value: dict[str, Any], tail: str) -> None:
    text = json.dumps(value, ensure_ascii=False) + tail
    assert jsonscan.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"body":"hi"}',
        '{"body":"caf\\u00e9 \\ud83d\\ude00","metadata":{"a":[1,2.5,null,true]}}',
        "[1, 2]",
        ' {"a": 1}',
        '"text"',
        "3",
    ],
)
def test_every_kind_of_text_reads_the_same(text: str) -> None:
    assert jsonscan.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    ['{"body":"hi"} x', '{"body":"hi"', '{"body":"\\x"}', "{", "{}{}", "", "{'a': 1}", "{,}"],
)
def test_what_json_loads_refuses_is_refused_as_a_decode_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        jsonscan.loads(text)
