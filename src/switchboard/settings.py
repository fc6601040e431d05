"""The one settings object: read once at start from CLI flags, ``SWITCHBOARD_*`` variables and
an optional YAML config file, then passed down. Nothing else in the code reads the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from switchboard.protocol.gateway_section import GatewaySection

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
GATEWAY_KEYS = ("secrets", "deployments", "models")


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "switchboard"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "switchboard"


class Settings(BaseSettings):
    """Server configuration. Precedence: CLI flag > environment > config file > default."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="forbid")

    host: str | None = Field(
        default=None,
        description="Interface to bind.",
        json_schema_extra={"default_text": "127.0.0.1 without keys, else 0.0.0.0"},
    )
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    model: Path | None = Field(
        default=None, description="A GGUF file to serve instead of the embedded default model.",
        json_schema_extra={"default_text": "the embedded SmolLM2-135M-Instruct"},
    )
    model_id: str | None = Field(
        default=None, description="Public id of the served model.",
        json_schema_extra={
            "default_text": "smollm2-135m-instruct, else the file name without .gguf"
        },
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted API keys (simple keys without limits); comma-separated in the "
        "environment. With no key of any kind the server is open and binds 127.0.0.1 only.",
        json_schema_extra={"flag": "--api-key"},
    )
    root_path: str = Field(
        default="", description="Base path every route is mounted under, e.g. /Telkom-LLM/0.0.4."
    )
    ssl_certfile: Path | None = Field(
        default=None, description="TLS certificate (PEM); serves HTTPS with ssl_keyfile."
    )
    ssl_keyfile: Path | None = Field(default=None, description="TLS private key (PEM).")
    max_request_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, le=2**40,
        description="Largest JSON request body accepted, in bytes; larger ones get a 413 "
        "request_too_large.",
    )
    max_upload_bytes: int = Field(
        default=128 * 1024 * 1024, ge=1024, le=2**40,
        description="Largest document upload accepted (a multipart body, all its files "
        "together), in bytes; larger ones get a 413 request_too_large. Each file is also at "
        "most 50 MB.",
    )
    config: Path | None = Field(default=None, description="YAML config file.")

    # Engine
    weights: Literal["q8_0", "original", "auto"] = Field(
        default="q8_0",
        description="Serve the GGUF requantized to Q8_0 (converted once, cached), as shipped, "
        "or auto: whichever of the two decodes faster on this machine (one stream and 16 "
        "timed once at the first start, the verdict cached).",
    )
    flash_attn: bool | None = Field(
        default=None,
        description="llama.cpp flash attention; it skips other sequences' cells in a unified "
        "pool, and shifts logprobs slightly.",
        json_schema_extra={"default_text": "on only with kv_layout unified and q8_0 weights"},
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir, description="Where converted weights are kept.",
        json_schema_extra={
            "default_text": "$XDG_CACHE_HOME/switchboard or ~/.cache/switchboard"
        },
    )
    kv_layout: Literal["per-sequence", "unified"] = Field(
        default="per-sequence",
        description="A KV stream per sequence (attention reads only its own cells; each sequence "
        "has n_ctx / max_sequences) or one pool shared by all (any sequence may use every cell).",
    )
    n_ctx: int | None = Field(
        default=None, ge=256,
        description="KV cells in all (per-sequence: each request's context is n_ctx / "
        "max_sequences).",
        json_schema_extra={"default_text": "per-sequence: 2048 × max_sequences; unified: 8192"},
    )
    n_threads: int | None = Field(
        default=None, ge=1, description="CPU threads.",
        json_schema_extra={"flag": "--threads", "default_text": "all cores"},
    )
    max_sequences: int = Field(default=16, ge=1, le=128, description="Sequences decoded together.")
    max_queue: int = Field(default=256, ge=1, description="Requests waiting before 429.")
    max_num_batched_tokens: int = Field(
        default=256, ge=16, le=512,
        description="Tokens one engine step feeds, 16-512 (one per decoding sequence, the rest "
        "for prompt chunks): bounds how long running streams wait while prompts are read.",
    )
    prefix_cache: bool | None = Field(
        default=None,
        description="Keep finished sequences' KV cells to reuse shared prompt prefixes.",
        json_schema_extra={"default_text": "on, except unified without flash attention"},
    )
    grammar_fast_forward: bool = Field(
        default=True,
        description="Where a request's grammar (JSON Schema, tool call, regex, choice) allows "
        "only one continuation, append those tokens without sampling each and feed them in one "
        "forward pass. Off for requests that ask for logprobs and for beam search.",
    )
    speculative_ngram: bool = Field(
        default=True,
        description="Speculative decoding with prompt-lookup drafts: a greedy request's next "
        "tokens are guessed from the longest recent repeat in its own prompt and output, fed "
        "with its sampled token in one forward pass, and kept where the model agrees (same "
        "output, fewer steps when the answer quotes its context). Greedy requests only "
        "(temperature 0 or top_k 1), never beam search; needs flash attention (see flash_attn).",
        json_schema_extra={"flag": "--speculative"},
    )
    draft_model: Path | None = Field(
        default=None,
        description="A smaller GGUF with the served model's vocabulary whose greedy guesses "
        "speculating requests verify, instead of prompt lookups (same rules: greedy requests, "
        "flash attention).",
    )
    speculative_max_batch: int = Field(
        default=3, ge=1, le=128,
        description="Speculate only in engine steps where at most this many sequences decode "
        "(with more, checking the drafts costs more than it saves).",
    )
    default_max_tokens: int | None = Field(
        default=None, ge=1, description="Completion cap when a request sets none.",
        json_schema_extra={"default_text": "the rest of the context"},
    )
    default_temperature: float | None = Field(
        default=None, ge=0.0, le=2.0,
        description="Local models: temperature for requests that set none.",
        json_schema_extra={"default_text": "the GGUF's general.sampling.temp, else 0.8"},
    )
    default_top_p: float | None = Field(
        default=None, gt=0.0, le=1.0,
        description="Local models: top_p for requests that set none.",
        json_schema_extra={"default_text": "the GGUF's general.sampling.top_p, else 0.95"},
    )
    default_top_k: int | None = Field(
        default=None, ge=0,
        description="Local models: top_k for requests that set none (0: off).",
        json_schema_extra={"default_text": "the GGUF's general.sampling.top_k, else 40"},
    )
    default_min_p: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Local models: min_p for requests that set none (0: off).",
        json_schema_extra={"default_text": "the GGUF's general.sampling.min_p, else 0.05"},
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")

    # Governance: keys, limits, usage ledger
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the SQLite database lives (when no database_url is given).",
        json_schema_extra={
            "default_text": "$XDG_DATA_HOME/switchboard or ~/.local/share/switchboard"
        },
    )
    database_url: SecretStr | None = Field(
        default=None, description="A database instead of SQLite, e.g. "
        "postgresql+asyncpg://user:pass@host/db.",
        json_schema_extra={"default_text": "SQLite in data_dir"},
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Keep rate-limit counters in Redis (redis://host:6379/0), "
        "shared by replicas.",
        json_schema_extra={"default_text": "counters in the process"},
    )
    admin_key: SecretStr | None = Field(
        default=None, description="Key for the admin API (/admin/…); also a key without limits.",
        json_schema_extra={"default_text": "none: admin API off"},
    )
    ledger: bool = Field(default=True, description="Record every request in the usage ledger.")
    log_content: bool = Field(
        default=False, description="Store message contents in the ledger (off: metadata only)."
    )
    key_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a stored key's lookup is cached (revocation lag)."
    )
    ledger_flush_s: float = Field(default=0.5, gt=0, description="Ledger write interval.")
    ledger_sync: bool = Field(
        default=False,
        description="Write each request's ledger row before its response ends (non-streamed: "
        "before the body is sent; streamed: before data: [DONE]), so a crash loses no row. "
        "Off: rows are written in batches every ledger_flush_s, and a kill -9 loses at most "
        "the rows of the last interval.",
    )
    reserve_output_tokens: int = Field(
        default=4096, ge=1,
        description="Output tokens held against a key's tpm and budget while a request runs "
        "that sets no max_tokens on an upstream model (a local model holds the rest of its "
        "context); the request's actual usage replaces it when it ends.",
    )

    # Gateway: the config file's top-level `secrets`, `deployments` and `models`.
    gateway: GatewaySection = Field(
        default_factory=GatewaySection,
        description="The config file's top-level secrets, deployments and models (see Gateway).",
        json_schema_extra={"flag": False, "default_text": "the server's own model"},
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("root_path")
    @classmethod
    def _normalise_root(cls, value: str) -> str:
        value = value.strip()
        if value in ("", "/"):
            return ""
        return "/" + value.strip("/")

    @property
    def served_model_id(self) -> str:
        if self.model_id:
            return self.model_id
        if self.model is None:
            return DEFAULT_MODEL_ID
        return self.model.name.removesuffix(".gguf")

    @property
    def bind_host(self) -> str:
        if self.host:
            return self.host
        return "0.0.0.0" if self.api_keys or self.admin_key else "127.0.0.1"

    @property
    def use_flash_attn(self) -> bool:
        """Only a unified pool gains from llama.cpp's CPU flash attention (it skips other
        sequences' cells); with a stream per sequence it is slower, the more so the longer the
        context (docs: Serving and the engine, *Flash attention*)."""
        if self.flash_attn is not None:
            return self.flash_attn
        return self.kv_layout == "unified" and self.weights != "original"

    @property
    def kv_cells(self) -> int:
        """KV cells in all: ``n_ctx``, or the layout's default."""
        if self.n_ctx is not None:
            return self.n_ctx
        return 2048 * self.max_sequences if self.kv_layout == "per-sequence" else 8192

    @property
    def use_prefix_cache(self) -> bool:
        """Outputs stay the same with the cache in streams, and in a unified pool only with
        flash attention."""
        if self.prefix_cache is not None:
            return self.prefix_cache
        return self.kv_layout == "per-sequence" or self.use_flash_attn

    @property
    def threads(self) -> int:
        return self.n_threads or max(1, os.cpu_count() or 1)

    @property
    def routing(self) -> GatewaySection:
        """The gateway section with the server's own model filled in when none is configured
        (each deployment's kind checks its options in the gateway: ``gateway_config``)."""
        return self.gateway.with_defaults(self.served_model_id, self.model)

    def secret_values(self) -> dict[str, str]:
        """Every configured secret's value (resolved from the environment at start)."""
        values = {}
        for name, source in self.gateway.secrets.items():
            if source.value is not None:
                values[name] = source.value.get_secret_value()
            else:
                values[name] = os.environ[source.env or ""]
        return values


def load_settings(cli: dict[str, Any]) -> Settings:
    """Build the settings from CLI values (``None`` = not given), the environment and the config."""
    given = {k: v for k, v in cli.items() if v is not None and v != []}
    config_path = given.get("config") or os.environ.get("SWITCHBOARD_CONFIG")
    file_values: dict[str, Any] = {}
    if config_path:
        file_values = read_config_file(Path(config_path))
        # The environment outranks the file: drop file values that a variable also sets.
        file_values = {
            k: v for k, v in file_values.items() if f"SWITCHBOARD_{k.upper()}" not in os.environ
        }
    settings = Settings(**{**file_values, **given})
    for name, source in settings.gateway.secrets.items():
        if source.env is not None and source.env not in os.environ:
            raise ValueError(f"secret {name!r} reads ${source.env}, which is not set")
    return settings


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ValueError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings")
    gateway = {k: data.pop(k) for k in GATEWAY_KEYS if k in data}
    server = data.get("server", data)
    values = {str(k).replace("-", "_"): v for k, v in server.items()}
    if gateway:
        values["gateway"] = gateway
    return values
