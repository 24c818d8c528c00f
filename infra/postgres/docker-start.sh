#!/bin/sh
# Docker mode's Postgres. On the first start (an empty data volume): a cluster whose superuser is
# POSTGRES_USER with POSTGRES_PASSWORD, reachable from the compose network with that password,
# and the databases of databases.sql. Then the server, in the foreground.
#
# The cluster is made in a scratch folder of the volume and renamed into place once complete, so
# that a start interrupted half-way (a kill, a full disk) is made again from the start rather
# than taken for a finished cluster without its databases.
set -eu
: "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}" "${PGDATA:?}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  scratch="$PGDATA.init"
  rm -rf "$scratch"
  password_file=$(mktemp)
  printf '%s' "$POSTGRES_PASSWORD" > "$password_file"
  # The socket inside the container trusts its own processes; the network needs the password.
  initdb --pgdata="$scratch" --username="$POSTGRES_USER" --pwfile="$password_file" \
    --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$password_file"
  echo "host all all all scram-sha-256" >> "$scratch/pg_hba.conf"
  # The databases, made over the socket alone, before the server listens on the network.
  pg_ctl --pgdata="$scratch" --wait --silent -o "-c listen_addresses=''" start
  psql --quiet --no-psqlrc -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname=postgres \
    --file=/opt/bottega-postgres/databases.sql
  pg_ctl --pgdata="$scratch" --wait --silent stop
  mv "$scratch" "$PGDATA"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*'
