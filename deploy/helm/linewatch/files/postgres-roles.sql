-- One database role per service, each owning its own schema and nothing else.
-- Idempotent: the chart's db-roles Job runs it after every install and upgrade, as the
-- database owner:
--   psql -v ON_ERROR_STOP=1 -v db=<database> -v ingest_password=... -v sync_password=...
--        -v ota_password=... -v inference_password=... -f postgres-roles.sql
-- Each service connects as linewatch_<service>; its search_path is its schema, where it
-- creates its tables. No service can read or write another's tables, and nobody but the
-- owner creates anything in public.
SELECT format('CREATE ROLE %I LOGIN', r)
FROM unnest(ARRAY['linewatch_ingest', 'linewatch_sync', 'linewatch_ota', 'linewatch_inference']) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec

ALTER ROLE linewatch_ingest WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'ingest_password';
ALTER ROLE linewatch_sync WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'sync_password';
ALTER ROLE linewatch_ota WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'ota_password';
ALTER ROLE linewatch_inference WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'inference_password';

CREATE SCHEMA IF NOT EXISTS ingest AUTHORIZATION linewatch_ingest;
CREATE SCHEMA IF NOT EXISTS sync AUTHORIZATION linewatch_sync;
CREATE SCHEMA IF NOT EXISTS ota AUTHORIZATION linewatch_ota;
CREATE SCHEMA IF NOT EXISTS inference AUTHORIZATION linewatch_inference;

ALTER ROLE linewatch_ingest IN DATABASE :"db" SET search_path = ingest;
ALTER ROLE linewatch_sync IN DATABASE :"db" SET search_path = sync;
ALTER ROLE linewatch_ota IN DATABASE :"db" SET search_path = ota;
ALTER ROLE linewatch_inference IN DATABASE :"db" SET search_path = inference;

REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO linewatch_ingest, linewatch_sync, linewatch_ota, linewatch_inference;
