-- Run once by the postgres image, on its first start: the Feast registry's database, beside
-- MLflow's (POSTGRES_DB). Feast creates its tables in it on the first `feast apply`.
CREATE DATABASE feast;
