"""The ``switchboard`` command: ``switchboard serve [options]``.

The ``serve`` flags are generated from the ``Settings`` fields (``settings_reference``), one
flag per setting; unset flags fall back to ``SWITCHBOARD_*`` variables, then to the
``--config`` YAML file, then to defaults.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from typing import Any

from pydantic import ValidationError

from switchboard import __version__
from switchboard.buckets_command import add_buckets_command, run_buckets_command
from switchboard.gateway.config import gateway_config
from switchboard.keys_command import add_keys_command, run_keys_command
from switchboard.settings import Settings, load_settings
from switchboard.settings_reference import add_settings_arguments

log = logging.getLogger("switchboard")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"switchboard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the OpenAI-compatible server",
        description="Run the OpenAI-compatible server. Each flag is a setting: unset flags fall "
        "back to SWITCHBOARD_* variables, then to the --config file, then to the default.",
    )
    add_settings_arguments(serve)
    add_keys_command(commands)
    add_buckets_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "buckets":  # a client of a running server: no settings needed
        return run_buckets_command(args)
    values: dict[str, Any] = {k: v for k, v in vars(args).items()
                              if k not in ("command", "action", "func") and not k.startswith("k_")}
    try:
        settings = load_settings(values)
        if args.command == "serve":  # each deployment checked by its provider kind, up front
            gateway_config(settings)
    except (ValidationError, ValueError) as exc:
        print(f"switchboard: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings)
    if args.command == "keys":
        return run_keys_command(settings, args)
    return 1


def serve(settings: Settings) -> int:
    import uvicorn

    from switchboard.http.app import create_app
    from switchboard.http.request_id import RequestIdLogFilter

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdLogFilter())
    if settings.model is not None and not settings.model.is_file():
        print(f"switchboard: model file not found: {settings.model}", file=sys.stderr)
        return 2
    if (settings.ssl_certfile is None) != (settings.ssl_keyfile is None):
        print("switchboard: --ssl-certfile and --ssl-keyfile go together", file=sys.stderr)
        return 2
    if not settings.api_keys and not settings.admin_key:
        log.warning(
            "no API key configured: the server is open to anyone who can reach it, "
            "so it binds %s only (set --api-key to listen on other interfaces)",
            settings.bind_host,
        )
    scheme = "https" if settings.ssl_certfile else "http"
    log.info(
        "serving %s at %s://%s:%d%s/v1",
        settings.served_model_id,
        scheme,
        settings.bind_host,
        settings.port,
        settings.root_path,
    )
    app = create_app(settings)
    tune_garbage_collector()
    uvicorn.run(
        app,
        host=settings.bind_host,
        port=settings.port,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
    )
    return 0


def tune_garbage_collector() -> None:
    """Take the objects made at startup (modules, routes, schemas), which live as long as the
    process, out of the cyclic collector's scans, and collect young objects every 10,000
    allocations instead of 700, so that requests in flight are not promoted to the oldest
    generation by the hundred and full collections (which scan everything) stay rare under load.
    Its effect on tail latency is on the docs' Performance page."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


if __name__ == "__main__":
    sys.exit(main())
