"""The ``switchboard`` command's process set-up."""

from __future__ import annotations

import argparse
import gc
from pathlib import Path
from typing import Any

import pytest

from switchboard import cli
from switchboard.settings import Settings, load_settings
from switchboard.settings_reference import setting_options


def test_serve_freezes_startup_objects_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """By the time uvicorn runs the app, the objects startup made are out of the cyclic GC's
    scans and young objects are collected every 10,000 allocations."""
    seen: dict[str, Any] = {}

    def run(app: object, **_: object) -> None:
        seen["frozen"] = gc.get_freeze_count()
        seen["threshold"] = gc.get_threshold()
        seen["scanned"] = len(gc.get_objects(generation=2))

    monkeypatch.setattr("uvicorn.run", run)
    monkeypatch.setattr("switchboard.http.app.create_app", lambda settings: object())
    threshold = gc.get_threshold()
    try:
        assert cli.serve(Settings()) == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert seen["frozen"] > 10_000  # this process's modules, functions, classes
    assert seen["threshold"][0] == 10_000
    assert seen["scanned"] < seen["frozen"]  # full collections skip the frozen ones


def serve_help() -> str:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return " ".join(commands.choices["serve"].format_help().split())  # unwrapped


def test_serve_help_shows_each_flags_default_and_environment() -> None:
    text = serve_help()
    options = [o for o in setting_options() if o.flag]
    assert len(options) >= 25
    for option in options:
        assert option.flag in text
        assert f"(default: {option.default_text}; env: {option.env})" in text, option.name
    assert "--no-ledger" in text and "SWITCHBOARD_API_KEYS" in text


def test_every_plain_setting_is_a_flag() -> None:
    """Settings get their flag from the model; only the gateway (a nested config) has none."""
    without_flag = {o.name for o in setting_options() if o.flag is None}
    assert without_flag == {"gateway"}


def test_serve_flags_keep_their_names_and_meanings(tmp_path: Path) -> None:
    args = cli.build_parser().parse_args([
        "serve", "--api-key", "sk-one", "--api-key", "sk-two", "--admin-key", "adm",
        "--weights", "original", "--config", str(tmp_path / "c.yaml"), "--root-path", "/x/1",
        "--no-ledger", "--no-flash-attn", "--prefix-cache", "--threads", "2", "--port", "9000",
        "--kv-layout", "unified", "--data-dir", str(tmp_path), "--max-num-batched-tokens", "64",
    ])
    values = vars(args)
    assert values["api_keys"] == ["sk-one", "sk-two"]
    assert (values["admin_key"], values["weights"], values["root_path"]) == ("adm", "original",
                                                                            "/x/1")
    assert (values["ledger"], values["flash_attn"], values["prefix_cache"]) == (False, False, True)
    assert (values["n_threads"], values["port"], values["max_num_batched_tokens"]) == (2, 9000, 64)
    assert values["config"] == tmp_path / "c.yaml" and values["data_dir"] == tmp_path
    assert values["log_content"] is None  # not given: the environment and the file still apply
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["serve", "--weights", "q2"])


def test_unset_flags_leave_the_environment_in_charge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_LEDGER", "false")
    monkeypatch.setenv("SWITCHBOARD_N_THREADS", "3")
    args = vars(cli.build_parser().parse_args(["serve"]))
    values = {k: v for k, v in args.items() if k != "command"}
    settings = load_settings(values)
    assert (settings.ledger, settings.n_threads) == (False, 3)


def test_keys_and_buckets_commands_still_parse(tmp_path: Path) -> None:
    parser = cli.build_parser()
    keys = parser.parse_args(["keys", "list", "--all", "--data-dir", str(tmp_path)])
    assert (keys.command, keys.action, keys.k_all, keys.data_dir) == ("keys", "list", True,
                                                                      tmp_path)
    assert parser.parse_args(["buckets", "upload", "b", "f.txt", "--key", "k"]).command == "buckets"
