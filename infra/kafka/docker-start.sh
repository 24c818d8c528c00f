#!/bin/sh
# Docker mode's broker: what local mode's runner does before it starts the broker
# (bottega.stack.services.kafka_service), from the same BOTTEGA_* settings:
# - fill server.properties' placeholders (the file local mode fills);
# - on the first start, format the storage with a fresh cluster id;
# - run kafka.Kafka in the foreground, as the container's main process.
set -eu

export host="${BOTTEGA_KAFKA__HOST:?the advertised host of the broker}"
export bind_host="${BOTTEGA_BIND_HOST:-0.0.0.0}"
export port="${BOTTEGA_KAFKA__PORT:-9092}"
export controller_port="${BOTTEGA_KAFKA__CONTROLLER_PORT:-9094}"
export partitions="${BOTTEGA_KAFKA__PARTITIONS:-3}"
export data_dir=/var/lib/kafka/data
heap="${BOTTEGA_KAFKA__HEAP:-512m}"
config=/var/lib/kafka/server.properties
java_opts="-Xms$heap -Xmx$heap -XX:+UseG1GC -Djava.awt.headless=true"
java_opts="$java_opts -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties"

# shellcheck disable=SC2016 # envsubst's own list of the variables to fill, unexpanded
envsubst '${host} ${bind_host} ${port} ${controller_port} ${partitions} ${data_dir}' \
  < /opt/kafka/config/server.properties > "$config"

if [ ! -f "$data_dir/meta.properties" ]; then
  # shellcheck disable=SC2086 # java_opts is a list of options
  cluster_id=$(java $java_opts -cp '/opt/kafka/libs/*' kafka.tools.StorageTool random-uuid)
  # One id in 64 starts with "-", which the tool would read as an option: --cluster-id=ID.
  # shellcheck disable=SC2086
  java $java_opts -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format \
    "--cluster-id=$cluster_id" -c "$config"
fi

# shellcheck disable=SC2086
exec java $java_opts -cp '/opt/kafka/libs/*' kafka.Kafka "$config"
