"""Uploads that once failed with a 500 (on SQLite and on PostgreSQL): JSON nested past the
parser's depth, filenames the database cannot hold, NUL characters and lone surrogates in the
text; and deleting a document whose name holds ``/``."""

from __future__ import annotations

import pytest

from switchboard.retrieval.documents import MAX_FILENAME_CHARS, DocumentError, extract_text
from tests.conftest import HealthPoller
from tests.retrieval.conftest import Users, make_pdf, upload, wait_task

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


def documents(users: Users, bucket: str) -> list[dict]:
    r = users.alice.get(f"/v1/buckets/{bucket}/documents")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def search_text(users: Users, bucket: str, query: str) -> str:
    r = users.alice.post("/v2/ai/embeddings/similarity-search",
                         json={"bucket_name": bucket, "query": query, "num_of_docs": 1})
    assert r.status_code == 200, r.text
    return r.json()["data"][0]["document_chunk"]


# -- extraction, without a server -------------------------------------------------------------

def test_deep_json_is_refused_and_moderate_nesting_kept() -> None:
    with pytest.raises(DocumentError, match="nested too deeply"):
        extract_text("deep.json", DEEP_JSON)
    _, text = extract_text("ok.json", b'{"a": ' * 50 + b"1" + b"}" * 50)
    assert text.count('"a"') == 50


def test_text_loses_nul_and_lone_surrogates() -> None:
    assert extract_text("nul.txt", b"door\x00 code 1234")[1] == "door code 1234"
    _, text = extract_text("s.json", b'{"k": "a\\ud800b\\u0000c"}')
    text.encode("utf-8")  # storable: no lone surrogate left
    assert "a?b" in text


@pytest.mark.parametrize("filename", ["x" * MAX_FILENAME_CHARS + ".txt",
                                      "tab\tname.txt", "nul\x00name.txt"])
def test_filenames_a_database_cannot_hold_are_refused(filename: str) -> None:
    with pytest.raises(DocumentError):
        extract_text(filename, b"text")


def test_the_longest_filename_is_accepted() -> None:
    assert extract_text("x" * (MAX_FILENAME_CHARS - 4) + ".txt", b"text")[1] == "text"


# -- through the API, on each database --------------------------------------------------------

def test_deep_json_upload_is_a_400(users: Users) -> None:
    r = upload(users.alice, "deep", {"deep.json": DEEP_JSON})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_document"
    assert "nested too deeply" in r.json()["error"]["message"]


def test_overlong_filename_is_a_400(users: Users) -> None:
    r = upload(users.alice, "long-names", {"x" * 600 + ".txt": b"some text"})
    assert r.status_code == 400, r.text
    assert f"longer than {MAX_FILENAME_CHARS} characters" in r.json()["error"]["message"]
    longest = "y" * (MAX_FILENAME_CHARS - 4) + ".txt"
    r = upload(users.alice, "long-names", {longest: b"the longest name"})
    assert r.status_code == 202, r.text
    assert wait_task(users.alice, r.json()["data"]["task_id"])["status"] == "success"
    assert [d["filename"] for d in documents(users, "long-names")] == [longest]


def test_nul_in_text_is_dropped(users: Users) -> None:
    r = upload(users.alice, "nul-text", {"codes.txt": b"The gate\x00 code is 4711.\x00",
                                         "codes.json": b'{"safe": "combination\\u0000 9876"}'})
    assert r.status_code == 202, r.text
    assert wait_task(users.alice, r.json()["data"]["task_id"])["status"] == "success"
    assert "The gate code is 4711." in search_text(users, "nul-text", "gate code")
    assert "9876" in search_text(users, "nul-text", "safe combination")


def test_lone_surrogate_in_json_is_stored(users: Users) -> None:
    r = upload(users.alice, "surrogates", {"s.json": b'{"note": "broken \\udc00 pair"}'})
    assert r.status_code == 202, r.text
    assert wait_task(users.alice, r.json()["data"]["task_id"])["status"] == "success"
    assert "broken ? pair" in search_text(users, "surrogates", "broken pair")


@pytest.mark.parametrize("path", ["docs/guide.txt", "docs%2Fguide.txt"])
def test_document_with_a_slash_can_be_deleted(users: Users, path: str) -> None:
    bucket = "slashes-" + str(len(path))
    r = upload(users.alice, bucket, {"docs/guide.txt": b"The guide.", "other.txt": b"Other."})
    assert r.status_code == 202, r.text
    wait_task(users.alice, r.json()["data"]["task_id"])
    r = users.alice.delete(f"/v1/buckets/{bucket}/documents/{path}")
    assert r.status_code == 200, r.text
    assert r.json() == {"filename": "docs/guide.txt", "deleted": True}
    assert [d["filename"] for d in documents(users, bucket)] == ["other.txt"]
    r = users.alice.delete(f"/v1/buckets/{bucket}/documents/{path}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "document_not_found"


def test_a_slow_pdf_is_read_off_the_event_loop(users: Users) -> None:
    """A PDF whose text takes pypdf seconds to extract (150,000 text operators, no text):
    ``/health`` keeps answering meanwhile, and the upload is the usual 400."""
    pdf = make_pdf(") Tj T* (" * 150_000)
    with HealthPoller(users.server.base) as health:
        r = upload(users.alice, "slow", {"report.pdf": pdf})
    assert r.status_code == 400 and "no text" in r.json()["error"]["message"], r.text
    assert health.worst < 0.5, health.worst
