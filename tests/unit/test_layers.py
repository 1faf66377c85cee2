"""The core stays Airflow-free, so connectors can be tested and reused without Airflow."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_core_does_not_import_airflow():
    code = (
        "import sys, importlib, pkgutil, airconnect.core, airconnect.connectors; "
        "[importlib.import_module(m.name) for p in (airconnect.core, airconnect.connectors) "
        " for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]; "
        "import airconnect_retail.sales_forecast, airconnect_retail.auto_order, "
        "airconnect_retail.forecast, airconnect_retail.ordering, airconnect_retail.charts; "
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


def test_the_framework_imports_no_retail_code():
    """airconnect is the product; the retail scenario is an application on top of it. Importing every
    module of airconnect (the Airflow glue included) loads nothing of airconnect_retail."""
    code = (
        "import importlib, pkgutil, sys, airconnect; "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(airconnect.__path__, 'airconnect.')]; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'airconnect_retail'); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"airconnect imported retail code: {proc.stdout} {proc.stderr[-2000:]}"
    imports = [f"{p.relative_to(ROOT)}: {line.strip()}" for p in (ROOT / "plugins" / "airconnect").rglob("*.py")
               for line in p.read_text(encoding="utf-8").splitlines()
               if re.match(r"\s*(from|import)\s+airconnect_retail\b", line)]
    assert imports == []  # not even inside a function


def test_no_default_depends_on_where_the_package_is_installed(tmp_path):
    """After `pip install .` the package lives in site-packages: the definitions, the data and the item
    master are found beside the deployment's DAGs folder, not beside the package."""
    code = (
        "from airconnect.core.config import data_dir, default_connectors_dir; "
        "from airconnect_retail.auto_order import default_item_master; "
        "print(default_connectors_dir()); print(data_dir()); print(default_item_master())"
    )
    env = {"PYTHONPATH": str(ROOT / "plugins"), "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(tmp_path / "include" / "connectors"), str(tmp_path / "data"),
                                  str(tmp_path / "include" / "items.csv")]


def test_config_imports_no_connector_and_every_connector_has_one_folder():
    """The building blocks (config) know no connector; the registry lists each connector once, and
    everything about it is in its folder under airconnect/connectors/."""
    config = (ROOT / "plugins" / "airconnect" / "core" / "config.py").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(from|import)\s+airconnect\.(connectors|core\.registry)", config, re.M)
    from airconnect.core.registry import CONNECTORS

    folders = {c.runner.__module__.split(".")[2] for c in CONNECTORS}
    assert folders == {p.name for p in (ROOT / "plugins" / "airconnect" / "connectors").iterdir()
                       if p.is_dir() and not p.name.startswith("_")}
    assert len({c.name for c in CONNECTORS}) == len(CONNECTORS)


def test_every_module_imports_first_on_its_own():
    """A DAG file may import any module first: none may need another to be imported before it
    (a cycle through a package's __init__ breaks only some import orders)."""
    import pkgutil
    from concurrent.futures import ThreadPoolExecutor

    import airconnect

    names = [m.name for m in pkgutil.walk_packages(airconnect.__path__, "airconnect.")]
    code = "import importlib, sys; importlib.import_module(sys.argv[1])"

    def first_import(name: str) -> str | None:
        proc = subprocess.run([sys.executable, "-c", code, name], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")}, capture_output=True, text=True)
        return None if proc.returncode == 0 else f"{name}: {proc.stderr.strip().splitlines()[-1]}"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # one interpreter per module, a core each
        failed = [f for f in pool.map(first_import, names) if f is not None]
    assert failed == []
