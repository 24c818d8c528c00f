-- Run once, on the first start of Docker mode's Postgres (docker-start.sh): MLflow's backend
-- store and the Feast registry. Feast creates its tables on the first `feast apply`.
CREATE DATABASE mlflow;
CREATE DATABASE feast;
