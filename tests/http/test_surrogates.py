"""Lone surrogates (``\\ud800`` escapes without a partner) are taken out of JSON bodies."""

from __future__ import annotations

import json

from switchboard.http.surrogates import without_lone_surrogates


def test_lone_surrogates_become_question_marks_and_pairs_stay() -> None:
    body = b'{"input": "a\\ud800b \\ud83d\\ude00", "n": [1, "\\uDFFF"]}'
    assert json.loads(without_lone_surrogates(body)) == {"input": "a?b \U0001f600", "n": [1, "?"]}


def test_other_bodies_pass_untouched() -> None:
    clean = b'{"input": "caf\\u00e9 \\ud83d\\ude00"}'  # a pair: re-encoded, same text
    assert json.loads(without_lone_surrogates(clean)) == {"input": "café \U0001f600"}
    plain = b'{"input": "plain text"}'
    assert without_lone_surrogates(plain) is plain  # no escape: the very same bytes
    broken = b'{"input": "\\ud800'
    assert without_lone_surrogates(broken) is broken  # not JSON: left for the framework
