"""airconnect's single message transforms against Kafka Connect's own, byte for byte.

tests/smt/cases.json is the table: a record (topic, partition, offset, timestamp, key and value
bytes, headers), the converters, and a transforms/predicates config as a connector definition
holds it. tests/smt/SmtHarness.java applies Connect 4.1's real SMT classes to every case through
Connect's JsonConverter/StringConverter, in one JVM for the whole session; each test asserts that
airconnect's chain (built from the same config by the same validation a definition goes through)
gives the same topic, partition, key bytes, value bytes, headers and timestamp, or fails where
Connect fails.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from airconnect.core.errors import DataError
from airconnect.transforms import RecordCodec, build_chain

ROOT = Path(__file__).resolve().parents[2]
CASES_FILE = ROOT / "tests" / "smt" / "cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]


def _raw(value: Any) -> str | None:
    """A case's key or value as the record's text: a string as it is, anything else as compact JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _prepared() -> list[dict[str, Any]]:
    return [{**c, "key": _raw(c.get("key")), "value": _raw(c.get("value")),
             "config": {k: str(v) for k, v in c["config"].items()}} for c in CASES]


@pytest.fixture(scope="session")
def connect_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every case through Kafka Connect's transforms: one javac, one JVM."""
    stack = Path(os.environ.get("AIRCONNECT_STACK_DIR", ROOT / ".stack"))
    libs = stack / "kafka-libs"
    if not any(libs.glob("connect-transforms-*.jar")):
        pytest.fail(f"Kafka Connect's jars are not in {libs}; run scripts/stack.sh fetch")
    if shutil.which("javac") is None:
        pytest.fail("javac is not installed (scripts/setup.sh installs openjdk-17-jdk-headless)")
    classes = stack / "smt-harness"
    source = ROOT / "tests" / "smt" / "SmtHarness.java"
    built = classes / "SmtHarness.class"
    if not built.exists() or built.stat().st_mtime < source.stat().st_mtime:
        classes.mkdir(parents=True, exist_ok=True)
        subprocess.run(["javac", "-nowarn", "-cp", f"{libs}/*", "-d", str(classes), str(source)], check=True,
                       capture_output=True)
    cases = tmp_path_factory.mktemp("smt") / "cases.json"
    cases.write_text(json.dumps({"cases": _prepared()}, ensure_ascii=False), encoding="utf-8")
    run = subprocess.run(["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-Duser.timezone=UTC", "-Duser.language=en",
                          "-cp", f"{classes}:{libs}/*", "SmtHarness", str(cases)],
                         check=True, capture_output=True, timeout=120)
    return {r["id"]: r for r in json.loads(run.stdout)}


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def airconnect_result(case: dict[str, Any]) -> dict[str, Any]:
    """The case through airconnect's chain and converters, in the harness's shape."""
    chain, errors = build_chain(case["config"], "smt-test")
    assert not errors, errors
    assert chain is not None
    conv = case.get("converter", {})
    codec = RecordCodec(key_schemas=conv.get("key.schemas.enable", True),
                        value_json=conv.get("value.converter", "json") == "json",
                        value_schemas=conv.get("value.schemas.enable", True),
                        key_decimal=conv.get("decimal.format", "BASE64"), value_decimal=conv.get("decimal.format", "BASE64"))
    result: dict[str, Any] = {"id": case["id"], "records": []}

    def encoded(text: str | None) -> bytes | None:
        return None if text is None else text.encode("utf-8")

    try:
        source = case.get("kind") == "source"
        record = codec.decode(case["topic"], encoded(_raw(case.get("key"))), encoded(_raw(case.get("value"))),
                              [(h[0], encoded(h[1])) for h in case.get("headers", [])],
                              partition=case.get("partition") if source else (case.get("partition") or 0),
                              timestamp=case.get("timestamp"), offset=None if source else case.get("offset", 0))
        out = chain.apply(record)
        if out is not None:
            key, value, headers = codec.encode(out)
            result["records"].append({"topic": out.topic, "partition": out.kafka_partition, "key": _b64(key),
                                      "value": _b64(value), "timestamp": out.timestamp,
                                      "headers": [[k, _b64(v)] for k, v in headers]})
    except DataError as exc:
        result["error"] = str(exc)
    return result


def _readable(result: dict[str, Any]) -> dict[str, Any]:
    """Decoded bytes, for a readable assertion message."""
    def text(b: str | None) -> str | None:
        return None if b is None else base64.b64decode(b).decode("utf-8", "replace")

    return {**result, "records": [{**r, "key": text(r["key"]), "value": text(r["value"]),
                                   "headers": [[k, text(v)] for k, v in r["headers"]]} for r in result["records"]]}


def _check(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    case = next(c for c in CASES if c["id"] == case_id)
    theirs = connect_results[case_id]
    ours = airconnect_result(case)
    if "error" in theirs:
        assert "error" in ours, (f"Kafka Connect fails ({theirs['error']}); airconnect gave "
                                 f"{_readable(ours)['records']}")
        assert not ours["records"]
        return
    assert "error" not in ours, f"airconnect failed ({ours['error']}); Kafka Connect gave {_readable(theirs)['records']}"
    assert _readable(ours)["records"] == _readable(theirs)["records"]
    assert ours["records"] == theirs["records"]


def _ids(smt: str) -> list[str]:
    found = [c["id"] for c in CASES if c["smt"] == smt]
    assert len(found) >= 2, f"{smt} needs at least two cases in {CASES_FILE}"
    return found


@pytest.mark.parametrize("case_id", _ids("InsertField"))
def test_insert_field(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("ReplaceField"))
def test_replace_field(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("MaskField"))
def test_mask_field(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("ValueToKey"))
def test_value_to_key(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("ExtractField"))
def test_extract_field(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("HoistField"))
def test_hoist_field(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("Cast"))
def test_cast(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("TimestampConverter"))
def test_timestamp_converter(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("Flatten"))
def test_flatten(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("RegexRouter"))
def test_regex_router(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("TimestampRouter"))
def test_timestamp_router(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("Filter"))
def test_filter(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("HeaderFrom"))
def test_header_from(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("InsertHeader"))
def test_insert_header(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("DropHeaders"))
def test_drop_headers(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("SetSchemaMetadata"))
def test_set_schema_metadata(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("TopicNameMatches"))
def test_topic_name_matches(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("HasHeaderKey"))
def test_has_header_key(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("RecordIsTombstone"))
def test_record_is_tombstone(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("Chain"))
def test_chains_and_converters(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


@pytest.mark.parametrize("case_id", _ids("Converter"))
def test_converters_alone(case_id: str, connect_results: dict[str, dict[str, Any]]) -> None:
    _check(case_id, connect_results)


def test_every_connect_transform_has_cases() -> None:
    from airconnect.transforms import PREDICATE_CLASSES, TRANSFORM_CLASSES

    covered = {c["smt"] for c in CASES}
    names = {cls.class_names[0].rsplit(".", 1)[-1].split("$")[0] for cls in (*TRANSFORM_CLASSES, *PREDICATE_CLASSES)
             if cls.class_names[0].startswith("org.apache.kafka")}
    assert names <= covered, f"no Kafka Connect comparison for {sorted(names - covered)}"
