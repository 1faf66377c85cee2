"""The core stays Airflow-free, so connectors can be tested and reused without Airflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_core_does_not_import_airflow():
    code = (
        "import sys; import airconnect.core, airconnect.core.runtime, airconnect.core.file_source, "
        "airconnect.core.file_sink, airconnect.core.kafka_client, airconnect.core.offsets, airconnect.core.jdbc_source, "
        "airconnect.core.s3_sink, airconnect.core.sales_forecast, airconnect.core.auto_order, airconnect.core.manage, "
        "airconnect.core.forecast, airconnect.core.ordering, airconnect.core.charts; "
        "bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT / "plugins")},
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"the core imported Airflow: {proc.stdout} {proc.stderr}"


def test_no_module_is_named_after_the_standard_library():
    stdlib = set(sys.stdlib_module_names)
    clashes = [p for p in (ROOT / "plugins").rglob("*.py") if p.stem in stdlib]
    assert clashes == []
