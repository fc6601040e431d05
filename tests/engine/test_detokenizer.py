"""Stop strings are held back while streaming and never leak into the output."""

from __future__ import annotations

from switchboard.engine.detokenizer import TextStream


def feed(stream: TextStream, pieces: list[bytes]) -> str:
    return "".join(stream.push(p) for p in pieces)


def test_text_without_stops_flows_through() -> None:
    s = TextStream()
    assert s.push(b"Hello") == "Hello"
    assert s.push(b" world") == " world"


def test_stop_string_split_over_tokens_is_held_and_cut() -> None:
    s = TextStream(stop=("END",))
    released = [s.push(p) for p in [b"abc E", b"N", b"D more"]]
    assert released == ["abc ", "", ""]
    assert s.stopped and s.matched_stop == "END"
    assert s.flush() == ""


def test_false_alarm_is_released() -> None:
    s = TextStream(stop=("END",))
    assert s.push(b"E") == ""
    assert s.push(b"N") == ""
    assert s.push(b"x") == "ENx"
    assert not s.stopped


def test_include_stop_keeps_the_stop_string() -> None:
    s = TextStream(stop=("\n\n",), include_stop=True)
    assert feed(s, [b"one\n", b"\ntwo"]) == "one\n\n"


def test_earliest_of_several_stops_wins() -> None:
    s = TextStream(stop=("world", "lo"))
    assert feed(s, [b"hello world"]) == "hel"


def test_utf8_split_across_tokens_is_joined() -> None:
    s = TextStream()
    data = "É".encode()
    assert s.push(data[:1]) == ""
    assert s.push(data[1:]) == "É"


def test_flush_releases_held_prefix_at_the_end() -> None:
    s = TextStream(stop=("STOP",))
    assert s.push(b"ok ST") == "ok "
    assert s.flush() == "ST"
