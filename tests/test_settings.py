"""The one settings object: flags, SWITCHBOARD_* variables and the YAML config file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.settings import DEFAULT_MODEL_ID, load_settings


def test_defaults_are_open_and_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWITCHBOARD_API_KEYS", raising=False)
    s = load_settings({})
    assert s.api_keys == [] and s.bind_host == "127.0.0.1" and s.port == 8000
    assert s.served_model_id == DEFAULT_MODEL_ID


def test_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_API_KEYS", "sk-alpha-1, sk-beta-2")
    s = load_settings({})
    assert [k.get_secret_value() for k in s.api_keys] == ["sk-alpha-1", "sk-beta-2"]
    assert s.bind_host == "0.0.0.0"
    assert "sk-alpha-1" not in repr(s)  # secrets never print


def test_precedence_flag_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "switchboard.yaml"
    config.write_text("server:\n  port: 9001\n  root-path: /Telkom-LLM/0.0.4/\n  n_ctx: 4096\n")
    monkeypatch.setenv("SWITCHBOARD_N_CTX", "2048")
    s = load_settings({"config": config})
    assert (s.port, s.root_path, s.n_ctx) == (9001, "/Telkom-LLM/0.0.4", 2048)
    assert load_settings({"config": config, "port": 9002}).port == 9002


def test_model_path_gives_model_id(tmp_path: Path) -> None:
    assert load_settings({"model": tmp_path / "qwen-0.5b.gguf"}).served_model_id == "qwen-0.5b"


def test_bad_configuration_exits_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("server:\n  port: not-a-port\n  colour: blue\n")
    result = subprocess.run(
        [sys.executable, "-m", "switchboard", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "port" in result.stderr and "colour" in result.stderr


def test_missing_model_file_is_reported(tmp_path: Path) -> None:
    from switchboard.engine import LlamaModel, ModelLoadError

    with pytest.raises(ModelLoadError, match="not found"):
        LlamaModel(tmp_path / "missing.gguf", n_ctx=256, n_seq_max=1, n_threads=1)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf")
    with pytest.raises(ModelLoadError):
        LlamaModel(junk, n_ctx=256, n_seq_max=1, n_threads=1)


def test_flash_attention_follows_the_kv_layout_and_weight_format() -> None:
    assert load_settings({}).use_flash_attn is False  # slower with a stream per sequence
    assert load_settings({"kv_layout": "unified"}).use_flash_attn is True
    unified_original = {"kv_layout": "unified", "weights": "original"}
    assert load_settings(unified_original).use_flash_attn is False
    assert load_settings({"weights": "original", "flash_attn": True}).use_flash_attn is True


def test_prefix_cache_is_on_where_outputs_stay_the_same() -> None:
    assert load_settings({}).use_prefix_cache is True
    assert load_settings({"weights": "original"}).use_prefix_cache is True
    assert load_settings({"kv_layout": "unified"}).use_prefix_cache is True
    assert load_settings({"kv_layout": "unified", "weights": "original"}).use_prefix_cache is False
    assert load_settings({"prefix_cache": False}).use_prefix_cache is False


def test_missing_model_path_stops_the_server_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "switchboard", "serve", "--model", str(tmp_path / "no.gguf")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "model file not found" in result.stderr


def test_governance_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWITCHBOARD_API_KEYS", raising=False)
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", "postgresql://u:hunter2@db/sb")
    monkeypatch.setenv("SWITCHBOARD_LOG_CONTENT", "true")
    config = tmp_path / "switchboard.yaml"
    config.write_text("server:\n  redis-url: redis://cache:6379/0\n  ledger: false\n")
    s = load_settings({"config": config, "admin_key": "adm-1", "data_dir": tmp_path})
    assert s.bind_host == "0.0.0.0"  # an admin key means keys are required
    assert s.database_url is not None and "hunter2" not in repr(s)
    assert s.redis_url is not None and s.redis_url.get_secret_value() == "redis://cache:6379/0"
    assert (s.ledger, s.log_content, s.data_dir) == (False, True, tmp_path)


def test_kv_cells_follow_the_layout() -> None:
    assert load_settings({}).kv_layout == "per-sequence"
    assert load_settings({"max_sequences": 4}).kv_cells == 4 * 2048  # 2,048 per sequence
    assert load_settings({"kv_layout": "unified"}).kv_cells == 8192  # one pool
    assert load_settings({"kv_layout": "unified", "n_ctx": 4096}).kv_cells == 4096


def test_step_token_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    assert load_settings({}).max_num_batched_tokens == 256
    monkeypatch.setenv("SWITCHBOARD_MAX_NUM_BATCHED_TOKENS", "64")
    assert load_settings({}).max_num_batched_tokens == 64
    with pytest.raises(ValidationError, match="max_num_batched_tokens"):
        load_settings({"max_num_batched_tokens": 1024})  # more than one llama_decode takes
