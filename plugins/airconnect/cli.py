"""The ``airconnect`` command: Kafka Connect's management verbs from a shell.

    airconnect validate [FILE...]          check definitions (default: the connectors folder)
    airconnect list                        connectors, their class, topics, offsets (and sinks' lag)
    airconnect offsets NAME                show a connector's offsets (KIP-875 shape)
    airconnect offsets NAME --set FILE|-   alter them (KIP-875 PATCH: listed partitions only; null removes)
    airconnect lag [NAME...]               sinks' consumer lag per topic-partition (default: every sink)
    airconnect reset NAME... [--delete-topics | --redeliver] [--delete-stale-objects]
                                           reset offsets (and delete the connectors' topics); a reset
                                           that would deliver again into a topic or file that holds
                                           the records already is refused without one of the flags

Connectors created at runtime (kept in Airflow's metadata database, each run by its own DAG
``connector_<NAME>``), with the REST API's own functions (``airconnect.rest``):

    airconnect create -f DEF.json [--initial-state RUNNING|PAUSED|STOPPED]
    airconnect update -f DEF.json         replace its config (or create it)
    airconnect delete NAME                remove it (its offsets stay, as in Kafka Connect)
    airconnect pause|resume|stop NAME     pause/unpause its DAG; stop = KIP-875's STOPPED
    airconnect restart NAME [--include-tasks] [--only-failed]
    airconnect status NAME                its state, as GET /connectors/NAME/status
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from airconnect.core.errors import AirconnectError, ConfigError
from airconnect.core.registry import Definitions, read_definitions, validate


def _pick(definitions: Definitions, names: list[str]) -> list:
    """The named connectors; an invalid one raises its own error (the others need not be valid)."""
    defs = definitions.by_name()
    for n in names:
        error = definitions.error_of(n)
        if n not in defs and error is not None:
            raise error
    unknown = [n for n in names if n not in defs]
    if unknown:
        raise AirconnectError(f"no connector named {', '.join(map(repr, unknown))}; known: {', '.join(sorted(defs))}")
    return [defs[n] for n in names]


RUNTIME_VERBS = ("create", "update", "delete", "pause", "resume", "stop", "status", "restart")


def _read_definition(path: str) -> object:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AirconnectError(f"cannot read {path}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AirconnectError(f"{'stdin' if path == '-' else path} is not JSON: {exc}") from None


def _runtime_verb(args: argparse.Namespace) -> int:
    """The verbs on connectors created at runtime: the REST API's functions, so both act alike."""
    from airconnect import rest

    try:
        if args.cmd == "create":
            doc = _read_definition(args.file)
            if isinstance(doc, dict) and args.initial_state:
                doc = {**doc, "initial_state": args.initial_state}
            info, _ = rest.create_connector(doc)
            print(f"created {info['name']} (DAG {rest.runtime_dag_id(info['name'])})")
        elif args.cmd == "update":
            doc = _read_definition(args.file)
            if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
                raise AirconnectError(f"{args.file}: expected {{\"name\": ..., \"config\": {{...}}}}")
            info, created = rest.put_connector_config(doc["name"], doc.get("config"))
            print(f"{'created' if created else 'updated'} {info['name']}")
        elif args.cmd == "delete":
            rest.delete_connector(args.name)
            print(f"deleted {args.name} (its offsets stay)")
        elif args.cmd == "pause":
            rest.pause_connector_(args.name)
            print(f"paused {args.name}")
        elif args.cmd == "resume":
            rest.resume_connector_(args.name)
            print(f"resumed {args.name}")
        elif args.cmd == "stop":
            rest.stop_connector(args.name)
            print(f"stopped {args.name}")
        elif args.cmd == "restart":
            status = rest.restart_connector_(args.name, include_tasks=args.include_tasks, only_failed=args.only_failed)
            print(f"restarted {args.name}" if status is None else json.dumps(status, indent=2))
        elif args.cmd == "status":
            print(json.dumps(rest.connector_status(rest._connector(args.name)), indent=2))
        return 0
    except rest.ConnectError as exc:
        print(f"airconnect: {exc.message}", file=sys.stderr)
        return 2
    except AirconnectError as exc:
        print(f"airconnect: {exc}", file=sys.stderr)
        return 2


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
    p_off.add_argument("--set", metavar="FILE", dest="set_file",
                       help="alter the offsets from a KIP-875 JSON document ({\"offsets\": [...]}); '-' reads stdin")
    p_lag = sub.add_parser("lag", help="show sinks' consumer lag")
    p_lag.add_argument("names", nargs="*")
    p_reset = sub.add_parser("reset", help="reset connectors' offsets")
    p_reset.add_argument("names", nargs="+")
    p_reset.add_argument("--delete-topics", action="store_true", help="also delete the topics the connectors write or read")
    p_reset.add_argument("--delete-stale-objects", action="store_true",
                         help="S3 sinks: also delete the bucket's objects that belong to an earlier (or, with "
                              "--delete-topics, the deleted) life of their topics")
    p_reset.add_argument("--redeliver", action="store_true",
                         help="reset even though the topics (or a file sink's file) still hold what the next run "
                              "delivers again: each record will be there twice")
    for verb, what in (("create", "create a connector from a definition file ({\"name\", \"config\"})"),
                       ("update", "replace a connector's config from a definition file (or create it)")):
        p_def = sub.add_parser(verb, help=what)
        p_def.add_argument("-f", "--file", required=True, help="the definition, as POSTed to Kafka Connect; '-' reads stdin")
        if verb == "create":
            p_def.add_argument("--initial-state", choices=("RUNNING", "PAUSED", "STOPPED"), default=None)
    for verb, what in (("delete", "delete a connector created at runtime (its offsets stay)"),
                       ("pause", "pause a connector's DAG"), ("resume", "resume (unpause) a connector's DAG"),
                       ("stop", "stop a connector (KIP-875: its offsets may then be altered or reset)"),
                       ("status", "a connector's state"), ("restart", "restart a connector: a new run of its DAG")):
        p_one = sub.add_parser(verb, help=what)
        p_one.add_argument("name")
        if verb == "restart":
            p_one.add_argument("--include-tasks", action="store_true")
            p_one.add_argument("--only-failed", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd in RUNTIME_VERBS:
        return _runtime_verb(args)

    try:
        if args.cmd == "validate":  # every definition, every error: nothing stops at the first
            if args.files:
                configs, errors = [], []
                for f in args.files:
                    try:
                        doc = json.loads(Path(f).read_text(encoding="utf-8"))
                    except (OSError, ValueError) as exc:
                        errors.append(ConfigError(f"{f} cannot be read as JSON: {exc}"))
                        continue
                    for d in doc if isinstance(doc, list) else [doc]:
                        try:
                            configs.append(validate(d, source=f))
                        except ConfigError as exc:
                            errors.append(exc)
            else:
                found = read_definitions(args.connectors_dir)
                configs, errors = list(found.configs), list(found.errors)
            for c in configs:
                print(f"ok  {c.name}  ({c.cls.name}, {c.kind})")
            for problem in errors:
                print(f"airconnect: {problem}", file=sys.stderr)
            if errors:
                print(f"airconnect: {len(errors)} invalid definition(s), {len(configs)} valid", file=sys.stderr)
            return 2 if errors else 0

        from airconnect.core import manage
        from airconnect.hooks import VariableStore, kafka_config
        from airconnect.operators import offsets_resources

        store = VariableStore()
        definitions = read_definitions(args.connectors_dir)
        defs = definitions.by_name()
        if args.cmd == "list":
            for problem in definitions.errors:
                print(f"airconnect: invalid, not listed: {problem}", file=sys.stderr)
            for c in defs.values():
                try:
                    doc = manage.get_offsets(c, store, offsets_resources(c))
                except AirconnectError as exc:  # its database unreachable: the Variable's, said so
                    print(f"airconnect: {c.name}: {exc}; listing the Variable's offsets", file=sys.stderr)
                    doc = manage.get_offsets(c, store)
                line = f"{c.name}\t{c.cls.name}\t{c.kind}\ttopics={','.join(c.topics) or '(pattern)'}\toffsets={json.dumps(doc['offsets'])}"
                if c.kind == "sink":
                    try:
                        rows = manage.sink_lag(c, store, kafka_config(args.kafka_conn_id or c["kafka.conn.id"]),
                                               resources=offsets_resources(c))
                        line += f"\tlag={sum(r['lag'] for r in rows)}"
                    except AirconnectError as exc:
                        line += f"\tlag=? ({exc})"
                print(line)
        elif args.cmd == "offsets":
            (c,) = _pick(definitions, [args.name])
            if args.set_file:
                text = sys.stdin.read() if args.set_file == "-" else Path(args.set_file).read_text(encoding="utf-8")
                try:
                    doc = json.loads(text)
                except ValueError as exc:
                    raise AirconnectError(f"{'stdin' if args.set_file == '-' else args.set_file} is not JSON: {exc}") from None
                kafka = kafka_config(args.kafka_conn_id or c["kafka.conn.id"]) if c.kind == "sink" else None
                print(manage.set_offsets(c, store, doc, kafka, offsets_resources(c))["message"])
            print(json.dumps(manage.get_offsets(c, store, offsets_resources(c)), indent=2, ensure_ascii=False))
        elif args.cmd == "lag":
            chosen = _pick(definitions, args.names) if args.names else [c for c in defs.values() if c.kind == "sink"]
            sources = [c.name for c in chosen if c.kind != "sink"]
            if sources:
                raise AirconnectError(f"only sinks have a consumer lag; {', '.join(sources)} "
                                      f"{'is a source' if len(sources) == 1 else 'are sources'}")
            print("connector\tgroup\ttopic\tpartition\tcommitted\tend\tlag")
            for c in chosen:
                for r in manage.sink_lag(c, store, kafka_config(args.kafka_conn_id or c["kafka.conn.id"]),
                                         resources=offsets_resources(c)):
                    committed = "-" if r["committed"] is None else r["committed"]
                    print(f"{c.name}\t{manage.sink_group(c)}\t{r['topic']}\t{r['partition']}\t{committed}\t{r['end']}\t{r['lag']}")
        elif args.cmd == "reset":
            topics: dict[str, set[str]] = {}  # Kafka connection -> the topics to delete there
            for c in _pick(definitions, args.names):
                conn_id = args.kafka_conn_id or c["kafka.conn.id"]
                # With --delete-topics nothing is left to hold the records twice.
                kafka = kafka_config(conn_id)
                used = manage.connector_topics(c, kafka)  # (a pattern's topics: before they are deleted)
                print(manage.reset_offsets(c, store, kafka, redeliver=args.redeliver or args.delete_topics,
                                           resources=offsets_resources(c))["message"])
                topics.setdefault(conn_id, set()).update(used)
            if args.delete_topics:
                for conn_id, names in topics.items():
                    deleted = manage.delete_topics(sorted(names), kafka_config(conn_id))
                    print(f"deleted topics: {', '.join(deleted) or '(none existed)'}")
            if args.delete_stale_objects:
                from airconnect.connectors.s3.manifest import remove_stale_objects
                from airconnect.connectors.s3.spec import S3_SINK
                from airconnect.hooks import s3_client

                for c in _pick(definitions, args.names):
                    if c.cls is S3_SINK:
                        keys = remove_stale_objects(c, s3_client(c["aws.conn.id"]),
                                                    kafka_config(args.kafka_conn_id or c["kafka.conn.id"]))
                        print(f"{c.name}: deleted {len(keys)} stale object(s) from s3://{c['s3.bucket.name']}")
        return 0
    except AirconnectError as exc:
        print(f"airconnect: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
