"""The ``airconnect`` command: Kafka Connect's management verbs from a shell.

    airconnect validate [FILE...]          check definitions (default: the connectors folder)
    airconnect list                        connectors, their class, topics and offsets
    airconnect offsets NAME                show a connector's offsets (KIP-875 shape)
    airconnect reset NAME... [--delete-topics]
                                           reset offsets (and delete the connectors' topics)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from airconnect.core.config import load_definitions, validate
from airconnect.core.errors import AirconnectError


def _definitions(directory: str | None) -> dict:
    return {c.name: c for c in load_definitions(directory)}


def _pick(defs: dict, names: list[str]) -> list:
    unknown = [n for n in names if n not in defs]
    if unknown:
        raise AirconnectError(f"no connector named {', '.join(map(repr, unknown))}; known: {', '.join(sorted(defs))}")
    return [defs[n] for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airconnect", description="Manage airconnect connectors.")
    parser.add_argument("--connectors-dir", help="folder of connector definitions (default: $AIRCONNECT_CONNECTORS_DIR)")
    parser.add_argument("--kafka-conn-id", default=None, help="Airflow connection to Kafka (default: each connector's kafka.conn.id)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_validate = sub.add_parser("validate", help="validate connector definitions")
    p_validate.add_argument("files", nargs="*")
    sub.add_parser("list", help="list connectors with their offsets")
    p_off = sub.add_parser("offsets", help="show a connector's offsets")
    p_off.add_argument("name")
    p_reset = sub.add_parser("reset", help="reset connectors' offsets")
    p_reset.add_argument("names", nargs="+")
    p_reset.add_argument("--delete-topics", action="store_true", help="also delete the topics the connectors write or read")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "validate":
            if args.files:
                configs = []
                for f in args.files:
                    doc = json.loads(Path(f).read_text(encoding="utf-8"))
                    configs += [validate(d, source=f) for d in (doc if isinstance(doc, list) else [doc])]
            else:
                configs = load_definitions(args.connectors_dir)
            for c in configs:
                print(f"ok  {c.name}  ({c.cls.name}, {c.kind})")
            return 0

        from airconnect.core import manage
        from airconnect.hooks import VariableStore, kafka_config

        store = VariableStore()
        defs = _definitions(args.connectors_dir)
        if args.cmd == "list":
            for c in defs.values():
                doc = manage.get_offsets(c, store)
                print(f"{c.name}\t{c.cls.name}\t{c.kind}\ttopics={','.join(manage.topics_of(c))}\toffsets={json.dumps(doc['offsets'])}")
        elif args.cmd == "offsets":
            (c,) = _pick(defs, [args.name])
            print(json.dumps(manage.get_offsets(c, store), indent=2, ensure_ascii=False))
        elif args.cmd == "reset":
            topics: list[str] = []
            for c in _pick(defs, args.names):
                kafka = kafka_config(args.kafka_conn_id or c["kafka.conn.id"])
                print(manage.reset_offsets(c, store, kafka)["message"])
                topics += manage.topics_of(c)
            if args.delete_topics and args.names:
                deleted = manage.delete_topics(sorted(set(topics)), kafka)
                print(f"deleted topics: {', '.join(deleted) or '(none existed)'}")
        return 0
    except AirconnectError as exc:
        print(f"airconnect: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
