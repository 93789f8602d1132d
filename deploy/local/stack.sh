#!/usr/bin/env bash
# The local stack without Docker: a real Apache Kafka cluster (Apache's own jars from Maven
# Central: one KRaft node by default, MPTF_KAFKA_BROKERS=3 for three, each broker and
# controller, with a three-voter controller quorum), a MongoDB wire-protocol server
# (SecantusDB: one per service, or one for all), and the four services.
#
#   deploy/local/stack.sh infra-up | services-up | up | down | status | env [SERVICE]
#   deploy/local/stack.sh mongo-up | restart-mongo
#   deploy/local/stack.sh kill-kafka-node N | start-kafka-node N | kafka-controller
#
# Everything it starts writes logs and pids under one run folder (MPTF_RUN_DIR, default
# .run/dev), and `down` stops only what that folder records. KAFKA_BOOTSTRAP_SERVERS and
# MONGODB_URL, when set, point at servers that already exist: then those are not started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN_DIR="${MPTF_RUN_DIR:-$ROOT/.run/dev}"
case "$RUN_DIR" in /*) ;; *) RUN_DIR="$ROOT/$RUN_DIR" ;; esac
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/kafka/pom.xml")"
KAFKA_CACHE="${MPTF_CACHE_DIR:-$HOME/.cache/mptf}/kafka-$KAFKA_VERSION"
KAFKA_PORT="${MPTF_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${MPTF_KAFKA_CONTROLLER_PORT:-19093}"
# node i (1..N) listens for clients on KAFKA_PORT+2(i-1) and for controllers on
# KAFKA_CONTROLLER_PORT+2(i-1); node 1 is named kafka, the others kafka-2, kafka-3
KAFKA_BROKERS="${MPTF_KAFKA_BROKERS:-1}"
MONGO_PORT="${MPTF_MONGO_PORT:-27117}"
# Each service owns its database; where does each database live? per-service (the default):
# each service its own SecantusDB (mongo-<service>, on MONGO_PORT+1..+4). SecantusDB serves
# every client under one global lock, so one server does at most one core's work: at
# capacity the one server for all was at 0.8 of the machine's 2 cores while the services
# and the broker left the rest idle; by turns, four servers took the pipeline from 31-32 to
# 39.5-40 programmes/s (docs/benchmarks.md). one: a single server (MONGO_PORT) for every service's
# database, as the test suite runs it (its tests read several services' databases through
# one MONGODB_URL). A real mongod (MONGODB_URL) serves every service either way.
MONGO_SERVERS="${MPTF_MONGO_SERVERS:-per-service}"
case "$MONGO_SERVERS" in one | per-service) ;;
  *) echo "[stack] ERROR: MPTF_MONGO_SERVERS is one or per-service, not $MONGO_SERVERS" >&2; exit 1 ;;
esac
declare -A MONGO_OFFSET=([intake]=1 [funding]=2 [monitoring]=3 [notifications]=4)
# SecantusDB's oplog (change streams, which we do not use) is capped by count; once over the
# cap the server prunes the oldest ~1,000 entries every 1,000 writes under its global lock
# (70-90 ms each, measured: 100-document inserts then took 30% longer). A million entries
# (about 1 GB of disk at most) is never reached by a test or benchmark run, whose servers
# start empty, where 50,000 was passed a third of the way into a benchmark; a long-lived
# `./dev up` prunes past it as before.
MONGO_OPLOG_MAX="${MPTF_MONGO_OPLOG_MAX_ENTRIES:-1000000}"
# The brokers' JVM: the client JIT only (C1). With the default tiered compilation, C2's
# compiler threads took half of a broker's CPU for minutes after each start (0.12 of the
# machine's 2 cores at 8 programmes/s, measured by thread), competing with the services on a
# small machine; the C1-compiled request path costs ~10% more, far less than C2's compiling.
# Set MPTF_KAFKA_JVM_FLAGS for a long-lived broker on a larger machine.
KAFKA_JVM_FLAGS="${MPTF_KAFKA_JVM_FLAGS:--Xms256m -Xmx512m -XX:+UseG1GC -XX:TieredStopAtLevel=1}"
PY="${MPTF_PYTHON:-$ROOT/.venv/bin/python}"
SERVICES=(intake funding monitoring notifications)
declare -A PORTS=([intake]=8001 [funding]=8002 [monitoring]=8003 [notifications]=8004)
PORT_OFFSET="${MPTF_HTTP_PORT_OFFSET:-0}"

EXTERNAL_KAFKA="${KAFKA_BOOTSTRAP_SERVERS:-}"
EXTERNAL_MONGO="${MONGODB_URL:-}"
node_name() { if (($1 == 1)); then echo kafka; else echo "kafka-$1"; fi; }
node_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
node_controller_port() { echo $((KAFKA_CONTROLLER_PORT + 2 * ($1 - 1))); }
NODES=(); for ((i = 1; i <= KAFKA_BROKERS; i++)); do NODES+=("$i"); done
LOCAL_BOOTSTRAP="$(for i in "${NODES[@]}"; do printf '127.0.0.1:%s,' "$(node_port "$i")"; done)"
LOCAL_BOOTSTRAP="${LOCAL_BOOTSTRAP%,}"
BOOTSTRAP="${EXTERNAL_KAFKA:-$LOCAL_BOOTSTRAP}"
MONGO_URL="${EXTERNAL_MONGO:-mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true}"
# the Mongo servers this stack runs (none with MONGODB_URL), by name, and their ports
MONGO_NAMES=()
declare -A MONGO_PORTS=()
if [[ -z $EXTERNAL_MONGO ]]; then
  if [[ $MONGO_SERVERS == one ]]; then MONGO_NAMES=(mongo); MONGO_PORTS[mongo]=$MONGO_PORT
  else
    for s in "${SERVICES[@]}"; do
      MONGO_NAMES+=("mongo-$s"); MONGO_PORTS["mongo-$s"]=$((MONGO_PORT + MONGO_OFFSET[$s]))
    done
  fi
fi
mongo_url_of() {  # service (or console): the Mongo server its database lives on
  local port=${MONGO_PORTS[mongo-$1]:-}  # (a server of its own)
  if [[ -n $port ]]; then echo "mongodb://127.0.0.1:$port/?directConnection=true"
  else echo "$MONGO_URL"; fi
}
# Every Kafka principal's password (JSON, mode 0600): made once, on first start. With an
# external broker, MPTF_KAFKA_CREDENTIALS names that deployment's file.
CREDENTIALS="${MPTF_KAFKA_CREDENTIALS:-$RUN_DIR/kafka/credentials.json}"

# Every Mongo user's password (JSON {user: password}, mode 0600), made on first start for the
# servers this stack runs: mptf-admin, each server's administrator, and svc-<service>, who may
# read and write its own database alone (deploy/local/secantusd.py). The servers refuse
# anonymous clients. With MONGODB_URL, MPTF_MONGODB_CREDENTIALS names that deployment's file
# (else the URL carries the user).
MONGO_CREDENTIALS="${MPTF_MONGODB_CREDENTIALS:-}"
[[ -z $EXTERNAL_MONGO && -z $MONGO_CREDENTIALS ]] && MONGO_CREDENTIALS="$RUN_DIR/auth/mongo-credentials.json"

say() { printf '[stack] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

alive() { local f="$RUN_DIR/pids/$1.pid"; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

wait_for() { # name seconds command...
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      say "$name not ready after ${secs}s; last log lines:"
      tail -n 20 "$RUN_DIR/logs/$name.log" >&2 2>/dev/null || true
      return 1
    fi
    alive "$name" || { say "$name exited; log:"; tail -n 30 "$RUN_DIR/logs/$name.log" >&2 || true; return 1; }
    sleep 0.2
  done
}

start_bg() { # name command... : start detached, record pid
  local name=$1; shift
  mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids"
  setsid "$@" >>"$RUN_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN_DIR/pids/$name.pid"
}

kafka_jars() {
  if [[ ! -f "$KAFKA_CACHE/lib/.complete" ]]; then
    say "resolving Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_CACHE (once)"
    mkdir -p "$KAFKA_CACHE/lib"
    mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_CACHE/lib" >&2
    touch "$KAFKA_CACHE/lib/.complete"
  fi
}

kafka_node_up() {  # node id: format its storage once, start it
  local i=$1 name port cport dir
  name="$(node_name "$i")"; port="$(node_port "$i")"; cport="$(node_controller_port "$i")"
  if alive "$name"; then say "$name already running (pid $(cat "$RUN_DIR/pids/$name.pid"))"; return; fi
  port_open "$port" && die "port $port is taken by something this stack did not start"
  dir="$RUN_DIR/$name"
  mkdir -p "$dir/data" "$RUN_DIR/logs"
  local broker_pw admin_pw voters="" quorum
  broker_pw="$(cred broker)"; admin_pw="$(cred admin)"
  if ((KAFKA_BROKERS == 1)); then
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$cport"
  else  # a static quorum of every node
    for j in "${NODES[@]}"; do voters+="$j@127.0.0.1:$(node_controller_port "$j"),"; done
    quorum="controller.quorum.voters=${voters%,}"
  fi
  local rf=$((KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3)) isr=1
  ((rf >= 3)) && isr=2
  (umask 077; sed -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$cport#g" \
      -e "s#@NODE_ID@#$i#g" -e "s#@QUORUM@#$quorum#g" -e "s#@RF@#$rf#g" -e "s#@MIN_ISR@#$isr#g" \
      -e "s#@DATA@#$dir/data#g" -e "s#@BROKER_PASSWORD@#$broker_pw#g" \
      "$ROOT/deploy/kafka/server.properties.in" >"$dir/server.properties")
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    # the super users exist from the start; provisioning (as admin) adds everyone else
    local how=(--standalone)
    ((KAFKA_BROKERS > 1)) && how=()
    java -cp "$KAFKA_CACHE/lib/*" kafka.tools.StorageTool format "${how[@]}" \
      --cluster-id="$(cat "$RUN_DIR/kafka-cluster-id")" -c "$dir/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=broker,password=$broker_pw]" \
      --add-scram "SCRAM-SHA-512=[name=admin,password=$admin_pw]" \
      >>"$RUN_DIR/logs/$name.log" 2>&1 || die "Kafka storage format failed ($name)"
  fi
  # shellcheck disable=SC2086  # (the flags are words)
  start_bg "$name" java $KAFKA_JVM_FLAGS \
    -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.yaml" \
    -cp "$KAFKA_CACHE/lib/*" kafka.Kafka "$dir/server.properties"
}

kafka_up() {
  if [[ -n $EXTERNAL_KAFKA ]]; then say "using Kafka at $EXTERNAL_KAFKA"; return; fi
  kafka_jars
  mkdir -p "$RUN_DIR"
  "$PY" -m mptf_cli.provision credentials "$CREDENTIALS" || die "could not write $CREDENTIALS"
  if [[ ! -f $RUN_DIR/kafka-cluster-id ]]; then
    # base64 may begin with "-": passed as --cluster-id=<id> so it is never an option
    "$PY" -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))' \
      >"$RUN_DIR/kafka-cluster-id"
  fi
  for i in "${NODES[@]}"; do kafka_node_up "$i"; done
  for i in "${NODES[@]}"; do wait_for "$(node_name "$i")" 60 port_open "$(node_port "$i")"; done
  say "Kafka $KAFKA_VERSION ready on $LOCAL_BOOTSTRAP ($KAFKA_BROKERS node(s))"
}

kafka_controller() {  # the node id of the active controller (the quorum's leader), from the
                      # nodes' own quorum-state files: the highest epoch's leader
  "$PY" - "$RUN_DIR" "${NODES[@]}" <<'PY'
import json, sys
from pathlib import Path
best = (-1, -1)
for i in sys.argv[2:]:
    name = "kafka" if i == "1" else f"kafka-{i}"
    f = Path(sys.argv[1], name, "data", "__cluster_metadata-0", "quorum-state")
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError):
        continue
    if d.get("leaderId", -1) >= 0:
        best = max(best, (d.get("leaderEpoch", -1), d["leaderId"]))
print(best[1])
PY
}

mongo_credentials() {  # every user's password, made once (kept across restarts)
  "$PY" -m mptf_cli.mongo_users credentials "$MONGO_CREDENTIALS" \
    || die "could not make the Mongo users' passwords"
}

mongo_grants() {  # server name: its users (deploy/local/secantusd.py's MPTF_SECANTUS_GRANTS)
  local s out="mptf-admin=root"
  for s in "${SERVICES[@]}"; do
    [[ $1 == mongo || $1 == "mongo-$s" ]] && out+=" svc-$s=mptf_$s"
  done
  echo "$out"
}

mongo_server_up() {  # name port
  local name=$1 port=$2
  if alive "$name"; then say "$name already running"; return; fi
  port_open "$port" && die "port $port is taken by something this stack did not start"
  mkdir -p "$RUN_DIR/$name"
  # Only authenticated clients, each user with its grants (mongo_grants), made before the
  # port opens; the passwords come from MONGO_CREDENTIALS, never a command line.
  # The oplog is trimmed by count only (MONGO_OPLOG_MAX above): trimmed by age (the default,
  # 1 h), an hour-old burst of writes expires at once and the server prunes it under its
  # global lock; we measured every client stalled for a minute.
  # SecantusDB's own server, with its transactions' pages released after each statement
  # (deploy/local/secantusd.py says why: without it, every client stalled for 4-14 s now
  # and then, the CPUs idle). MPTF_SECANTUS_ACCOUNT (benchmarks): a file per server.
  start_bg "$name" env ${MPTF_SECANTUS_ACCOUNT:+MPTF_SECANTUS_ACCOUNT=$MPTF_SECANTUS_ACCOUNT.$name} \
    MPTF_SECANTUS_USERS="$MONGO_CREDENTIALS" MPTF_SECANTUS_GRANTS="$(mongo_grants "$name")" \
    "$PY" "$ROOT/deploy/local/secantusd.py" --host 127.0.0.1 --port "$port" \
    --storage-path "$RUN_DIR/$name/data" --log-level WARNING \
    --oplog-retention-seconds 315360000 --oplog-max-entries "$MONGO_OPLOG_MAX"
}

mongo_up() {
  if [[ -n $EXTERNAL_MONGO ]]; then say "using MongoDB at $EXTERNAL_MONGO"; return; fi
  local name
  if [[ $MONGO_SERVERS == per-service && -d $RUN_DIR/mongo/data ]]; then
    say "note: $RUN_DIR/mongo holds the databases of a single server for all services" \
      "(an earlier run's); MPTF_MONGO_SERVERS=one serves them"
  fi
  mongo_credentials
  for name in "${MONGO_NAMES[@]}"; do mongo_server_up "$name" "${MONGO_PORTS[$name]}"; done
  for name in "${MONGO_NAMES[@]}"; do
    wait_for "$name" 60 port_open "${MONGO_PORTS[$name]}"
    say "SecantusDB ready on 127.0.0.1:${MONGO_PORTS[$name]} ($name)"
  done
}

mongo_down() {  # both arrangements' servers: the folder may hold an earlier run's other one
  local s
  stop_one mongo
  for s in "${SERVICES[@]}"; do stop_one "mongo-$s"; done
}

cred() { "$PY" -c 'import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$CREDENTIALS" "$1"; }

topics_up() {  # users, topics and ACLs, as the admin principal (idempotent)
  local out
  out="$(KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" "$PY" -m mptf_cli.provision apply "$CREDENTIALS")" \
    || die "could not provision users, topics and ACLs"
  say "Kafka provisioned: $out (credentials: $CREDENTIALS)"
}

ZIPKIN_VERSION=3.5.1
ZIPKIN_JAR="${MPTF_CACHE_DIR:-$HOME/.cache/mptf}/zipkin-$ZIPKIN_VERSION/zipkin-server-$ZIPKIN_VERSION-exec.jar"
ZIPKIN_PORT="${MPTF_ZIPKIN_PORT:-9411}"
PROMETHEUS_PORT="${MPTF_PROMETHEUS_PORT:-9090}"

zipkin_up() { # the trace backend: Zipkin's server jar from Maven Central, in-memory storage
  if alive zipkin; then return; fi
  if [[ ! -f $ZIPKIN_JAR ]]; then
    say "resolving Zipkin $ZIPKIN_VERSION from Maven Central (once)"
    mvn -q -B dependency:copy -Dartifact="io.zipkin:zipkin-server:$ZIPKIN_VERSION:jar:exec" \
      -DoutputDirectory="$(dirname "$ZIPKIN_JAR")" >&2 || { say "no Zipkin: traces go to files"; return; }
  fi
  port_open "$ZIPKIN_PORT" && { say "port $ZIPKIN_PORT taken: not starting Zipkin"; return; }
  start_bg zipkin java -Xmx384m -jar "$ZIPKIN_JAR" --server.port="$ZIPKIN_PORT"
  wait_for zipkin 60 ready_http_path "$ZIPKIN_PORT" /health && say "Zipkin ready on http://127.0.0.1:$ZIPKIN_PORT/zipkin/"
}

prometheus_up() { # Debian's prometheus package, if installed (apt-get install prometheus)
  command -v prometheus >/dev/null || { say "Prometheus not installed (optional: apt-get install prometheus)"; return; }
  if alive prometheus; then return; fi
  port_open "$PROMETHEUS_PORT" && { say "port $PROMETHEUS_PORT taken: not starting Prometheus"; return; }
  mkdir -p "$RUN_DIR/prometheus"
  start_bg prometheus prometheus --config.file="$ROOT/deploy/prometheus/prometheus.local.yml" \
    --storage.tsdb.path="$RUN_DIR/prometheus" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
  wait_for prometheus 30 ready_http_path "$PROMETHEUS_PORT" /-/ready && say "Prometheus ready on http://127.0.0.1:$PROMETHEUS_PORT"
}

ready_http_path() { curl -fsS "http://127.0.0.1:$1$2" >/dev/null 2>&1; }

service_env() { # name
  local name=$1
  echo "KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP"
  echo "MONGODB_URL=$(mongo_url_of "$name")"
  echo "MPTF_HTTP_PORT=$((${PORTS[$name]:-8005} + PORT_OFFSET))"
  # the password is read from the credentials file, never put on a command line
  echo "MPTF_KAFKA_CREDENTIALS=$CREDENTIALS"
  # its Mongo user's password, from the same kind of file (the console has no database)
  [[ $name != console && -n $MONGO_CREDENTIALS ]] && echo "MPTF_MONGODB_CREDENTIALS=$MONGO_CREDENTIALS"
  # bearer tokens are JWTs signed by the local issuer (mptf token); no development tokens
  echo "MPTF_AUTH_JWKS=$RUN_DIR/auth/jwks.json"
  # only the console signs (its own operator tokens); services hold no private key
  if [[ $name == console ]]; then
    echo "MPTF_AUTH_SIGNING_KEY=$RUN_DIR/auth/signing-key.pem"
    echo "KAFKA_USERNAME=operator"
  else
    echo "KAFKA_USERNAME=svc-$name"
  fi
  # traces: to the local Zipkin when it runs, else to a JSON-lines file per service
  if [[ -z ${MPTF_OTEL_EXPORTER:-} ]] && alive zipkin; then
    echo "MPTF_OTEL_EXPORTER=zipkin"
    echo "MPTF_OTEL_ENDPOINT=http://127.0.0.1:$ZIPKIN_PORT/api/v2/spans"
  else
    echo "MPTF_OTEL_EXPORTER=${MPTF_OTEL_EXPORTER:-file}"
    echo "MPTF_OTEL_FILE=${MPTF_OTEL_FILE:-$RUN_DIR/traces/$name.jsonl}"
  fi
}

ready_http() { curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }

auth_keys() {  # the local token issuer's key (mptf token signs with it; services verify)
  "$PY" -c 'import sys; from shared.auth import make_keys; make_keys(sys.argv[1])' "$RUN_DIR/auth" \
    || die "could not make the token signing key"
}

services_up() {
  mkdir -p "$RUN_DIR/traces"
  auth_keys
  for s in "${SERVICES[@]}"; do
    if alive "$s"; then say "$s already running"; continue; fi
    # shellcheck disable=SC2046
    start_bg "$s" env $(service_env "$s") "$PY" -m "services.$s"
  done
  for s in "${SERVICES[@]}"; do
    local port=$((${PORTS[$s]} + PORT_OFFSET))
    wait_for "$s" 90 ready_http "$port"
    say "$s ready on http://127.0.0.1:$port"
  done
  if ! alive console; then  # the operator console: reads the services and the broker
    # shellcheck disable=SC2046
    start_bg console env $(service_env console | grep -v MPTF_HTTP_PORT) \
      MPTF_HTTP_PORT=$((8005 + PORT_OFFSET)) "$PY" -m mptf_cli.console
    wait_for console 30 ready_http_path $((8005 + PORT_OFFSET)) / && \
      say "console ready on http://127.0.0.1:$((8005 + PORT_OFFSET))"
  fi
}

stop_one() {
  local name=$1 f="$RUN_DIR/pids/$1.pid" pid
  [[ -f $f ]] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
    say "stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

down() {
  stop_one console
  for s in "${SERVICES[@]}"; do stop_one "$s"; done
  for i in "${NODES[@]}"; do stop_one "$(node_name "$i")"; done
  mongo_down
  stop_one zipkin
  stop_one prometheus
}

status() {
  for n in $(for i in "${NODES[@]}"; do node_name "$i"; done) "${MONGO_NAMES[@]}" zipkin prometheus "${SERVICES[@]}" console; do
    if alive "$n"; then printf '%-20s running (pid %s)\n' "$n" "$(cat "$RUN_DIR/pids/$n.pid")"
    else printf '%-20s stopped\n' "$n"; fi
  done
}

summary() {
  cat <<MSG

  Migration MPTF is running (run folder: $RUN_DIR)
    Kafka        $BOOTSTRAP        topics: mptf.inbound.concept-notes, mptf.programmes, ...
$(for s in "${SERVICES[@]}"; do printf '    MongoDB      %-13s %s\n' "$s" "$(mongo_url_of "$s")"; done)
    intake       http://127.0.0.1:$((8001 + PORT_OFFSET))/docs   (AsyncAPI: /asyncapi.json)
    funding      http://127.0.0.1:$((8002 + PORT_OFFSET))/docs
    monitoring   http://127.0.0.1:$((8003 + PORT_OFFSET))/docs
    notifications http://127.0.0.1:$((8004 + PORT_OFFSET))/docs
    console      http://127.0.0.1:$((8005 + PORT_OFFSET))/   (operator console, live)
    traces       http://127.0.0.1:$ZIPKIN_PORT/zipkin/  (search by tag mptf.programme_id=<id>;
                 without Zipkin: JSON lines in $RUN_DIR/traces/)
    metrics      http://127.0.0.1:800[1-4]/metrics   Prometheus http://127.0.0.1:$PROMETHEUS_PORT (if installed)
    logs         $RUN_DIR/logs/
    demo         .venv/bin/mptf seed ; .venv/bin/mptf follow <programme id>
    stop         ./dev down
MSG
}

cmd="${1:-status}"
case "$cmd" in
  infra-up) mongo_up; kafka_up; topics_up ;;
  mongo-up) mongo_up ;;
  services-up) services_up ;;
  up) mongo_up; kafka_up; topics_up; zipkin_up; prometheus_up; services_up; summary ;;
  down) down ;;
  status) status ;;
  # env: the servers' addresses; MONGODB_URL is SERVICE's database server (env SERVICE),
  # else the one server for all, else (one per service) MONGODB_URL_<SERVICE> for each
  env) [[ -z ${2:-} || -n ${MONGO_OFFSET[${2:-}]:-} ]] || die "env: no service $2 (${SERVICES[*]})"
       echo "KAFKA_BOOTSTRAP_SERVERS=$BOOTSTRAP"
       if [[ -n ${2:-} ]]; then
         echo "MONGODB_URL=$(mongo_url_of "$2")"
       elif [[ -n $EXTERNAL_MONGO || $MONGO_SERVERS == one ]]; then echo "MONGODB_URL=$MONGO_URL"
       else for s in "${SERVICES[@]}"; do echo "MONGODB_URL_${s^^}=$(mongo_url_of "$s")"; done
       fi
       echo "MPTF_KAFKA_CREDENTIALS=$CREDENTIALS"
       [[ -z $MONGO_CREDENTIALS ]] || echo "MPTF_MONGODB_CREDENTIALS=$MONGO_CREDENTIALS" ;;
  jars) kafka_jars ;;
  restart-kafka) for i in "${NODES[@]}"; do stop_one "$(node_name "$i")"; done; kafka_up ;;  # same data
  kill-kafka-node) kill -KILL "$(cat "$RUN_DIR/pids/$(node_name "$2").pid")"; rm -f "$RUN_DIR/pids/$(node_name "$2").pid" ;;
  # (a node restarted while 8 services load 2 cores took 48 s to open its port once: the JVM
  # 15 s, catching up on the metadata log 33 s)
  start-kafka-node) kafka_jars; kafka_node_up "$2"; wait_for "$(node_name "$2")" 180 port_open "$(node_port "$2")" ;;
  kafka-controller) kafka_controller ;;
  restart-mongo) mongo_down; mongo_up ;;  # (same data)
  *) die "unknown command $cmd (infra-up | mongo-up | services-up | up | down | status | env [SERVICE] | jars | kill-kafka-node N | start-kafka-node N | kafka-controller)" ;;
esac
