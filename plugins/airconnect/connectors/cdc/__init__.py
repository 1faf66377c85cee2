"""Change data capture sources: PostgreSQL (logical decoding, wal2json) and MariaDB (the row
binlog from a GTID position), writing Debezium's change events (spec, events, postgres, mariadb)."""
