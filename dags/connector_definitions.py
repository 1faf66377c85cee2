"""Every invalid connector definition, at once, as this file's import error in the Airflow UI.

The flow DAGs each read only the definitions of the classes they run, so a bad definition
breaks the DAG that would run it and no other; one whose class is unknown (or a file that is
not JSON) would break none. This file defines no DAG: it lists every invalid definition of
``$AIRCONNECT_CONNECTORS_DIR`` (as ``airconnect validate`` does) and every invalid one created at
runtime (stored in Airflow's DB: its DAG ``connector_<name>`` is then absent), so none goes unseen.
"""

from __future__ import annotations

from airconnect.definitions_db import all_definitions

all_definitions().raise_errors()
