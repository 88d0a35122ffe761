"""Serve one of the destination fakes the tests use (LINE Messaging API, the ESP list API, the
Twilio-like SMS API) on the compose network, for `docker compose --profile demo up`.

    python docker/demo/standins.py line|esp|sms [--port 8080]

The fakes are yorisoi_kit.servers.{line,esp,sms}; the `yorisoi` CLI serves only the sources (`serve
ecommerce`, `serve sftp`), so this wraps their create_app for the destinations. Credentials are
the fixed demo values of yorisoi_kit.demo (not secrets: these servers hold no real data and are not
published outside the compose network); docker/demo/prepare.py writes the same values into the
Airflow connections. A real deployment replaces these services with the brand's LINE official
account, email service provider and SMS provider.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI


def build_app(kind: str) -> FastAPI:
    """The FastAPI app of fake `kind` (line, esp or sms) with the demo's credentials."""
    from yorisoi_kit import demo

    if kind == "line":
        from yorisoi_kit.servers import line

        return line.create_app(demo.DEMO_LINE_TOKEN)
    if kind == "esp":
        from yorisoi.activation.selection.definitions import load_destinations
        from yorisoi_kit.servers import esp

        # the lists include/destinations.yml syncs to, as `make demo` creates them
        lists = {str(d.options().get("list_id")) for d in load_destinations() if d.kind == "esp_list"}
        return esp.create_app(demo.DEMO_ESP_KEY, list_ids=sorted(lists | {"main"}))
    if kind == "sms":
        from yorisoi_kit.servers import sms

        return sms.create_app(demo.DEMO_SMS_SID, demo.DEMO_SMS_TOKEN)
    raise ValueError(f"unknown stand-in {kind!r}: line, esp or sms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("line", "esp", "sms"))
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - inside its container, on the compose network
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    uvicorn.run(build_app(args.kind), host=args.host, port=args.port, log_level="info", lifespan="off")


if __name__ == "__main__":
    main()
