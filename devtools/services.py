"""`make stop`: stop the local model API that `make run` left running."""

from __future__ import annotations

import sys

from include.ml_pipeline.serving.process import api_status, stop_api


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    running = api_status()
    if command == "stop":
        if running is None:
            print("The model API is not running.")
            return 0
        stop_api()
        print(f"Stopped the model API at {running.url} (pid {running.pid}).")
        return 0
    print(f"Model API: {running.url} (pid {running.pid})" if running else "Model API: not running")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
