-- Run once by the postgres image on an empty volume (docker-entrypoint-initdb.d), as the
-- superuser airconnect, in database ec (POSTGRES_DB). Creates Airflow's metadata database and
-- the auto-ordering database next to the EC sales database.
CREATE USER airflow WITH PASSWORD 'airflow';
CREATE DATABASE airflow OWNER airflow;
CREATE DATABASE autoorder OWNER airconnect;
