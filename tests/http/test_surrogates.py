"""Lone surrogates (``\\ud800`` escapes without a partner) are taken out of JSON bodies, by the
one parse every JSON body gets (``switchboard.http.body_limits``)."""

from __future__ import annotations

import pytest

from switchboard.http.body_limits import parse_json


def test_lone_surrogates_become_question_marks_and_pairs_stay() -> None:
    body = b'{"input": "a\\ud800b \\ud83d\\ude00", "n": [1, "\\uDFFF"]}'
    assert parse_json(body) == {"input": "a?b \U0001f600", "n": [1, "?"]}
    keyed = b'{"a\\ud800": {"b\\udc00": ["\\ud800"]}}'  # keys too, at any depth
    assert parse_json(keyed) == {"a?": {"b?": ["?"]}}


def test_other_bodies_keep_their_text() -> None:
    clean = b'{"input": "caf\\u00e9 \\ud83d\\ude00"}'  # a pair: the same text
    assert parse_json(clean) == {"input": "café \U0001f600"}
    assert parse_json(b'{"input": "plain text"}') == {"input": "plain text"}
    with pytest.raises(ValueError):  # not JSON: left for the framework's own 422
        parse_json(b'{"input": "\\ud800')
