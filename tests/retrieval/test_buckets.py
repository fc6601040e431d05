"""Buckets end to end: uploads of every supported type (a PDF made here included), background
embedding tasks, a planted-fact corpus where the right chunk must rank first, re-uploads that
replace, bad uploads that store nothing, isolation between keys, and the ``retrieval`` tool in
chat on the embedded model, streamed too."""

from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest

from tests.retrieval.conftest import Users, make_pdf, upload, wait_task

FILLER = ("The committee met on Tuesday to review the quarterly schedule. Minutes were taken and "
          "circulated. Several routine items were approved without discussion. ")
CORPUS = {
    "heron.txt": (FILLER * 3 + "The launch code of Project Heron is MAGENTA-42. "
                  + FILLER * 3).encode(),
    "kitchen.md": ("# Kitchen\n\n" + FILLER * 2 + "The office coffee machine is descaled every "
                   "second Friday by Dana. " + FILLER * 2).encode(),
    "garden.html": ("<html><head><style>p{}</style></head><body><h1>Garden</h1><p>" + FILLER
                    + "</p><p>The rooftop garden grows saffron crocuses in October.</p><script>"
                    "var x = 1;</script></body></html>").encode(),
    "fleet.json": json.dumps({"fleet": [{"vehicle": "van", "note": FILLER},
                                        {"vehicle": "bicycle", "note": "The blue cargo bicycle "
                                         "is parked in bay seven."}]}).encode(),
    "staff.csv": b"name,role,fact\nAri,engineer,Ari keeps a pet tortoise named Sprocket\n"
                 b"Bo,designer,Bo prefers green tea\n",
    "manual.pdf": make_pdf("The emergency generator starts with the red lever marked G7."),
}
QUESTIONS = {
    "What is the launch code of Project Heron?": ("heron.txt", "MAGENTA-42"),
    "Who descales the coffee machine?": ("kitchen.md", "descaled"),
    "What grows in the rooftop garden?": ("garden.html", "saffron"),
    "Where is the cargo bicycle parked?": ("fleet.json", "bay seven"),
    "What is the name of Ari's pet?": ("staff.csv", "Sprocket"),
    "How do I start the emergency generator?": ("manual.pdf", "red lever"),
}


@pytest.fixture(scope="module")
def corpus(users: Users) -> str:
    response = upload(users.alice, "handbook", CORPUS, document_chunk_size=40,
                      document_chunk_overlap_size=8)
    assert response.status_code == 202, response.text
    task = response.json()["data"]
    assert task["status"] in ("queued", "processing", "success") and len(task["documents"]) == 6
    done = wait_task(users.alice, task["task_id"])
    assert done["status"] == "success", done
    return "handbook"


def search(client, bucket: str, query: str, n: int = 3) -> list[dict]:  # noqa: ANN001
    r = client.post("/v2/ai/embeddings/similarity-search",
                    json={"bucket_name": bucket, "query": query, "num_of_docs": n})
    assert r.status_code == 200, r.text
    return r.json()["data"]


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_planted_fact_ranks_first(users: Users, corpus: str, question: str) -> None:
    filename, needle = QUESTIONS[question]
    hits = search(users.alice, corpus, question)
    assert hits[0]["metadata"]["filename"] == filename, hits[0]
    assert needle in hits[0]["document_chunk"]
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    meta = hits[0]["metadata"]
    assert meta["source"] == f"handbook/{filename}" and len(meta["checksum"]) == 64
    assert meta["chunk_position"] >= 0


def test_listing_and_html_text(users: Users, corpus: str) -> None:
    docs = users.alice.get(f"/v1/buckets/{corpus}/documents").json()["data"]
    assert sorted(d["filename"] for d in docs) == sorted(CORPUS)
    assert all(d["status"] == "embedded" and d["chunks"] >= 1 for d in docs)
    garden = search(users.alice, corpus, "saffron crocuses rooftop garden", 1)[0]
    assert "var x" not in garden["document_chunk"] and "<p>" not in garden["document_chunk"]
    buckets = users.alice.get("/v1/buckets").json()["data"]
    assert [b["name"] for b in buckets] == ["handbook"] and buckets[0]["documents"] == 6


def test_reupload_replaces_chunks(users: Users) -> None:
    first = upload(users.alice, "notes", {"door.txt": b"The door code is 1111."}).json()["data"]
    wait_task(users.alice, first["task_id"])
    assert "1111" in search(users.alice, "notes", "door code", 1)[0]["document_chunk"]
    same = upload(users.alice, "notes", {"door.txt": b"The door code is 1111."}).json()["data"]
    assert same["documents"] == []  # unchanged: nothing to embed
    changed = upload(users.alice, "notes", {"door.txt": b"The door code is 2222."}).json()["data"]
    assert wait_task(users.alice, changed["task_id"])["status"] == "success"
    hits = search(users.alice, "notes", "door code", 5)
    assert len(hits) == 1 and "2222" in hits[0]["document_chunk"]
    assert users.alice.delete("/v1/buckets/notes/documents/door.txt").status_code == 200
    assert search(users.alice, "notes", "door code", 5) == []


@pytest.mark.parametrize(("files", "message"), [
    ({"empty.txt": b""}, "empty"),
    ({"tool.exe": b"MZ\x90\x00"}, "unsupported file type"),
    ({"broken.pdf": b"%PDF-1.4\nthis is not really a pdf"}, "PDF"),
    ({"bad.json": b"{not json"}, "JSON"),
    ({"ok.txt": b"fine text", "blank.md": b"   \n  "}, "no text"),
])
def test_bad_uploads_store_nothing(users: Users, files: dict[str, bytes], message: str) -> None:
    r = upload(users.bob, "bad-uploads", files)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]
    assert "bad-uploads" not in [b["name"] for b in users.bob.get("/v1/buckets").json()["data"]]


def test_buckets_belong_to_keys(users: Users, corpus: str) -> None:
    assert corpus not in [b["name"] for b in users.bob.get("/v1/buckets").json()["data"]]
    r = users.bob.post("/v2/ai/embeddings/similarity-search",
                       json={"bucket_name": corpus, "query": "launch code"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "bucket_not_found"
    assert users.bob.get(f"/v1/buckets/{corpus}/documents").status_code == 404
    assert users.bob.delete(f"/v1/buckets/{corpus}").status_code == 404
    # bob can have a bucket of the same name, with his own documents
    task = upload(users.bob, corpus, {"mine.txt": b"Bob's handbook says lunch is at noon."})
    wait_task(users.bob, task.json()["data"]["task_id"])
    assert search(users.bob, corpus, "launch code", 5)[0]["metadata"]["filename"] == "mine.txt"
    # alice cannot read bob's task; the admin sees everyone's buckets
    assert users.alice.get(f"/v2/ai/embeddings/{task.json()['data']['task_id']}").status_code == 404
    names = [b["name"] for b in users.admin.get("/v1/buckets").json()["data"]]
    assert names.count(corpus) == 2


def test_retrieval_tool_in_chat(users: Users, corpus: str) -> None:
    key = users.alice.headers["authorization"].split()[1]
    client = openai.OpenAI(base_url=users.server.v1, api_key=key, max_retries=0)
    tools = [{"type": "retrieval", "retrieval": {"bucket_ids": [corpus], "max_num_results": 2}}]
    messages = [{"role": "user", "content": "What is the launch code of Project Heron?"}]
    reply = client.chat.completions.create(model="smollm2-135m-instruct", messages=messages,
                                           tools=tools, max_tokens=20, temperature=0)
    used = reply.model_extra["retrieval"]["chunks"]
    assert used[0]["filename"] == "heron.txt" and "MAGENTA-42" in used[0]["text"]
    assert len(used) == 2 and used[0]["index"] == 1
    plain = client.chat.completions.create(model="smollm2-135m-instruct", messages=messages,
                                           max_tokens=20, temperature=0)
    assert reply.usage.prompt_tokens > plain.usage.prompt_tokens + 30  # the excerpts went in
    chunks = list(client.chat.completions.create(
        model="smollm2-135m-instruct", messages=messages, tools=tools, max_tokens=8,
        stream=True))
    assert chunks[-1].model_extra["retrieval"]["chunks"][0]["filename"] == "heron.txt"
    assert all("retrieval" not in (c.model_extra or {}) for c in chunks[:-1])
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="smollm2-135m-instruct", messages=messages,
                                       tools=[{"type": "retrieval",
                                               "retrieval": {"bucket_ids": ["missing"]}}])
    assert "missing" in err.value.body["message"]


def test_cli_upload_shows_progress(users: Users, tmp_path) -> None:  # noqa: ANN001
    key = users.alice.headers["authorization"].split()[1]
    (tmp_path / "one.txt").write_text("The sundial in the courtyard is exactly on time.")
    (tmp_path / "two.md").write_text("# Two\nThe archive closes at six.")
    run = subprocess.run(
        [sys.executable, "-m", "switchboard", "buckets", "upload", "cli-docs",
         str(tmp_path / "one.txt"), str(tmp_path / "two.md"), "--url", users.server.base,
         "--key", key], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert "2/2 documents" in run.stdout and "searchable" in run.stdout
    assert search(users.alice, "cli-docs", "When does the archive close?", 1)[0][
        "metadata"]["filename"] == "two.md"
    bad = subprocess.run(
        [sys.executable, "-m", "switchboard", "buckets", "upload", "cli-docs",
         str(tmp_path / "missing.txt"), "--url", users.server.base, "--key", key],
        capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "no such file" in bad.stderr


def test_embed_bucket_again_with_other_chunks(users: Users) -> None:
    text = ("Chunking test sentence number one about lighthouses and harbours. " * 30).encode()
    first = upload(users.bob, "rechunk", {"long.txt": text}, document_chunk_size=200,
                   document_chunk_overlap_size=20).json()["data"]
    wait_task(users.bob, first["task_id"])
    before = users.bob.get("/v1/buckets/rechunk/documents").json()["data"][0]["chunks"]
    r = users.bob.post("/v2/ai/embeddings", json={"bucket_name": "rechunk",
                                                   "document_chunk_size": 40,
                                                   "document_chunk_overlap_size": 10})
    assert r.status_code == 202, r.text
    assert wait_task(users.bob, r.json()["data"]["task_id"])["status"] == "success"
    after = users.bob.get("/v1/buckets/rechunk/documents").json()["data"][0]["chunks"]
    assert after > 3 * before
    bad = users.bob.post("/v2/ai/embeddings", json={"bucket_name": "rechunk",
                                                     "document_chunk_size": 10,
                                                     "document_chunk_overlap_size": 10})
    assert bad.status_code == 400
    assert users.alice.post("/v2/ai/embeddings", json={"bucket_name": "rechunk"}
                            ).status_code == 404


def test_one_keys_large_upload_does_not_hold_anothers(users: Users) -> None:
    """Uploads are embedded by a worker per key sharing the encoder: Bob's one-line file is
    searchable while Alice's large upload, sent first, is still being embedded."""
    large = " ".join(f"Shelf {i} of the archive holds ledgers from the year {1700 + i}."
                     for i in range(4_000)).encode()  # ~70,000 tokens: seconds of encoding
    first = upload(users.alice, "archive", {"ledgers.txt": large}).json()["data"]
    second = upload(users.bob, "memo", {"memo.txt": b"The meeting moved to Thursday."})
    assert second.status_code == 202, second.text
    assert wait_task(users.bob, second.json()["data"]["task_id"])["status"] == "success"
    still = users.alice.get(f"/v2/ai/embeddings/{first['task_id']}").json()["data"]
    assert still["status"] in ("queued", "processing"), still
    assert "Thursday" in search(users.bob, "memo", "when is the meeting", 1)[0]["document_chunk"]
    assert wait_task(users.alice, first["task_id"], timeout=120)["status"] == "success"
    assert users.alice.delete("/v1/buckets/archive").status_code == 200
    assert users.bob.delete("/v1/buckets/memo").status_code == 200
