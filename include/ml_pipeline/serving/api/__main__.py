"""Run the model API: `python -m include.ml_pipeline.serving.api [--host H] [--port P]`.

One uvicorn process (uvloop + httptools when installed) on a socket bound here with
`TCP_NODELAY` and `SO_REUSEADDR`, so small responses are not held back by Nagle's
algorithm. Settings come from the environment (see `settings.py`); `--host`/`--port`
override `MODEL_API_HOST`/`MODEL_API_PORT`.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import logging
import os
import socket


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket with TCP_NODELAY (inherited by accepted connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> None:
    # Set before numpy/scikit-learn load: one request never fans out over OpenMP threads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from dataclasses import replace

    from include.ml_pipeline.serving.api.settings import get_serving_settings
    from include.ml_pipeline.serving.loading.load import start_load

    parser = argparse.ArgumentParser(description="Serve the champion model over HTTP.")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        settings = get_serving_settings()
    except ValueError as exc:  # a setting that cannot be used: say which and how to fix it
        raise SystemExit(f"model API not started: {exc}") from None
    settings = replace(
        settings,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
    )
    # Start resolving + compiling the model (two child processes) before importing the
    # web stack, so the imports overlap.
    pending = start_load(
        settings.tracking_uri, settings.model_name, settings.alias, max_rows=settings.max_rows
    )

    import uvicorn

    from include.ml_pipeline.serving.api.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sock = bind_socket(settings.host, settings.port)
    config = uvicorn.Config(
        create_app(settings, pending=pending),
        loop="uvloop" if importlib.util.find_spec("uvloop") else "auto",
        http="httptools" if importlib.util.find_spec("httptools") else "auto",
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
        server_header=False,
    )
    logging.getLogger("ml_pipeline.serving").info(
        "model API on http://%s:%d serving %s", settings.host, settings.port, settings.model_uri
    )
    # A 1,000-row JSON request allocates ~11,000 objects, nearly all freed by reference
    # counting; the default gen-0 threshold (700) would still run ~15 collections per
    # request. The long-lived objects are frozen after each model load (app.py).
    gc.set_threshold(50_000, 20, 100)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
