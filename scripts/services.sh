#!/usr/bin/env bash
# Start or stop a real Redis server and a single-node Apache Kafka (KRaft) on
# free loopback ports, for tests and benchmarks.
#
#   scripts/services.sh start DIR [redis|kafka]  # installs what is missing, starts
#                                   # both (or one), writes DIR/env (FRESHREC_KAFKA, FRESHREC_REDIS_URL)
#   scripts/services.sh stop DIR [redis|kafka]   # stops them (or one)
#
# Starting a service again in the same DIR after a stop restarts it on the
# same port with the same data (Redis saves on stop): that is how the outage
# tests take a service away and bring it back.
#
# Kafka comes from Maven Central jars (scripts/kafka-pom.xml), fetched once
# into $FRESHREC_CACHE (default ~/.cache/freshrec). Needs Java 17+ and Maven;
# redis-server comes from Debian's package.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${FRESHREC_CACHE:-$HOME/.cache/freshrec}
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka-pom.xml")
lib=$cache/kafka-$kafka_version/lib

die() { echo "services.sh: $*" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

install_redis() {
  "$here/need.sh" redis-server=redis-server redis-cli=redis-tools >/dev/null || die "Redis (>= 6) is needed"
}

install_kafka() {
  [ -f "$lib/.complete" ] && return
  command -v java >/dev/null || die "java (17+) is needed for Kafka: apt-get install openjdk-17-jre-headless"
  command -v mvn >/dev/null || die "maven is needed once to fetch Kafka's jars: apt-get install maven"
  echo "services.sh: fetching Kafka $kafka_version jars into $lib (once)" >&2
  mkdir -p "$lib"
  mvn -q -f "$here/kafka-pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$lib" >"$cache/mvn.log" 2>&1 || die "mvn failed, see $cache/mvn.log"
  touch "$lib/.complete"
}

start_redis() {
  local dir=$1 rport
  install_redis
  if [ -f "$dir/redis.port" ]; then rport=$(cat "$dir/redis.port"); else rport=$(free_port); echo "$rport" >"$dir/redis.port"; fi
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" --daemonize yes --pidfile "$dir/redis.pid"
  for _ in $(seq 1 40); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$rport" ping >/dev/null 2>&1 || die "Redis did not answer on port $rport, see $dir/redis.log"
  cat >"$dir/redis.env" <<ENV
export FRESHREC_REDIS_URL=redis://127.0.0.1:$rport/0
export FRESHREC_REDIS_PORT=$rport
ENV
  echo "services.sh: Redis on 127.0.0.1:$rport" >&2
}

configure_kafka() {
  local dir=$1 kport cport
  kport=$(free_port); cport=$(free_port)
  while [ "$cport" = "$kport" ]; do cport=$(free_port); done
  rm -rf "$dir/kafka-data"
  mkdir -p "$dir/kafka-data"
  echo "$kport" >"$dir/kafka.port"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$kport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$kport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/kafka-data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  cat >"$dir/log4j2.properties" <<LOG
rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
LOG
  local id; id=$(java -cp "$lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  java -cp "$lib/*" kafka.tools.StorageTool format --standalone -t "$id" -c "$dir/server.properties" \
    >"$dir/kafka-format.log" 2>&1 || die "Kafka storage format failed, see $dir/kafka-format.log"
}

start_kafka() {
  local dir=$1
  install_kafka
  [ -f "$dir/kafka.port" ] || configure_kafka "$dir"
  local kport; kport=$(cat "$dir/kafka.port")
  local cp="$lib/*" heap="-Xms256m -Xmx1g -Dlog4j2.configurationFile=$dir/log4j2.properties"
  # shellcheck disable=SC2086
  nohup java $heap -cp "$cp" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
  for _ in $(seq 1 120); do
    grep -q "Kafka Server started\|started (kafka.server.KafkaRaftServer)" "$dir/kafka.log" 2>/dev/null && break
    kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null || die "Kafka exited, see $dir/kafka.log"
    sleep 0.5
  done
  grep -q "Kafka Server started\|started (kafka.server.KafkaRaftServer)" "$dir/kafka.log" \
    || die "Kafka did not start within 60 s, see $dir/kafka.log"
  echo "export FRESHREC_KAFKA=127.0.0.1:$kport" >"$dir/kafka.env"
  echo "services.sh: Kafka on 127.0.0.1:$kport" >&2
}

stop_pid() {
  local pidfile=$1
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

stop_redis() {
  local dir=$1
  [ -f "$dir/redis.pid" ] || return 0
  # SHUTDOWN SAVE writes dump.rdb, so a restart in the same DIR keeps the keys.
  redis-cli -p "$(cat "$dir/redis.port")" shutdown save >/dev/null 2>&1 || true
  stop_pid "$dir/redis.pid"
}

write_env() {
  local dir=$1
  { cat "$dir"/redis.env "$dir"/kafka.env 2>/dev/null || true; echo "export FRESHREC_SERVICES_DIR=$dir"; } >"$dir/env"
}

start() {
  local dir=$1 which=${2:-all}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  case "$which" in
    all) install_redis; install_kafka; start_redis "$dir"; start_kafka "$dir" ;;
    redis) start_redis "$dir" ;;
    kafka) start_kafka "$dir" ;;
    *) die "unknown service '$which': redis or kafka" ;;
  esac
  write_env "$dir"
  echo "services.sh: env in $dir/env" >&2
}

stop() {
  local dir=$1 which=${2:-all}
  case "$which" in
    all) stop_pid "$dir/kafka.pid"; stop_redis "$dir" ;;
    redis) stop_redis "$dir" ;;
    kafka) stop_pid "$dir/kafka.pid" ;;
    *) die "unknown service '$which': redis or kafka" ;;
  esac
}

case "${1:-}" in
  start) start "${2:?usage: services.sh start DIR [redis|kafka]}" "${3:-all}" ;;
  stop) stop "${2:?usage: services.sh stop DIR [redis|kafka]}" "${3:-all}" ;;
  *) die "usage: services.sh start|stop DIR [redis|kafka]" ;;
esac
