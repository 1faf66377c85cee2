"""airconnect's connectors, one folder each: everything about a connector class sits in its folder
(its spec, its I/O, its formats), Airflow-free. The delivery protocol is not here: connectors read
and say where they got to, or take records and flush, and :mod:`airconnect.core.delivery` does the
rest. :mod:`airconnect.core.registry` lists them."""
