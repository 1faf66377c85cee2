-- Run once by the mariadb image on an empty volume (docker-entrypoint-initdb.d). The CDC source
-- reads the binlog as a replica: it needs to ask for the binlog (REPLICATION SLAVE) and where
-- it ends (BINLOG MONITOR, MariaDB's REPLICATION CLIENT).
GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'airconnect'@'%';
