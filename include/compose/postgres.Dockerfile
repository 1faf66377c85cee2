# PostgreSQL 15 with wal2json, the logical decoding plugin airconnect's CDC source reads the log
# with (docker-compose.yaml starts it with wal_level=logical).
FROM postgres:15
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15-wal2json \
    && rm -rf /var/lib/apt/lists/*
