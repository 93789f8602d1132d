#!/bin/bash
# docker-compose's Kafka: one KRaft node with SASL/SCRAM and the StandardAuthorizer, like the
# local stack (deploy/kafka/server.properties.in). The broker's and the admin's passwords come
# from the credentials secret (made by `python -m mptf_cli.provision credentials FILE`);
# without it the container refuses to start. Storage is formatted once, with both users.
set -euo pipefail
CREDS=/run/secrets/kafka_credentials
[[ -s $CREDS ]] || { echo "no Kafka credentials secret: run ./dev compose-secrets first" >&2; exit 1; }
pw() { sed -n "s/^ *\"$1\": \"\([A-Za-z0-9_-]*\)\".*/\1/p" "$CREDS"; }
BROKER_PW="$(pw broker)"; ADMIN_PW="$(pw admin)"
[[ -n $BROKER_PW && -n $ADMIN_PW ]] || { echo "the credentials lack broker or admin" >&2; exit 1; }
CONF=/tmp/server.properties
umask 077
sed -e "s#@PORT@#9092#g" -e "s#@CONTROLLER_PORT@#9093#g" -e "s#@DATA@#/var/lib/kafka/data#g" \
    -e "s#@BROKER_PASSWORD@#$BROKER_PW#g" -e "s#127.0.0.1:9092#0.0.0.0:9092#" \
    -e "s#advertised.listeners=CLIENT://0.0.0.0:9092#advertised.listeners=CLIENT://kafka:9092#" \
    -e "s#CONTROLLER://127.0.0.1:9093#CONTROLLER://0.0.0.0:9093#" \
    -e "s#controller.quorum.bootstrap.servers=127.0.0.1:9093#controller.quorum.bootstrap.servers=kafka:9093#" \
    /etc/mptf/server.properties.in > "$CONF"
if [[ ! -f /var/lib/kafka/data/meta.properties ]]; then
  /opt/kafka/bin/kafka-storage.sh format --standalone --cluster-id="$(/opt/kafka/bin/kafka-storage.sh random-uuid)" \
    -c "$CONF" --add-scram "SCRAM-SHA-512=[name=broker,password=$BROKER_PW]" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$ADMIN_PW]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$CONF"
