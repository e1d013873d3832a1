#!/usr/bin/env bash
# A single-node Apache Kafka 4.1.1 broker (KRaft, combined broker+controller) on 127.0.0.1 for the
# demo, the tests and the benchmarks, built from Maven Central jars because there is no Docker and
# no apache.org download here.
#   bash scripts/kafka.sh start|stop|status
#   KAFKA_PORT=9092, KAFKA_CONTROLLER_PORT=KAFKA_PORT+1,
#   KAFKA_DATA=<repo>/.kafka (server.properties, log dirs, pid file, broker.log),
#   KAFKA_LIB=$HOME/.cache/compliance-platform/kafka-4.1.1/lib (the jars, downloaded once),
#   KAFKA_JAVA_OPTS=-Xmx512m.
#
# KAFKA_SASL=1 adds a second listener that emulates Azure Event Hubs' Kafka endpoint: SASL with the
# PLAIN mechanism over TLS (SASL_SSL), one user whose password the broker checks. The PLAINTEXT
# listener stays as it is (the readiness probe and the other tests use it).
#   KAFKA_SASL_PORT=KAFKA_PORT+2,
#   KAFKA_SASL_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT: no TLS),
#   KAFKA_SASL_USERNAME='$ConnectionString' (Event Hubs' literal user name),
#   KAFKA_SASL_PASSWORD=<a fake Event Hubs connection string> (printable ASCII).
# With SASL_SSL a private CA and a broker certificate for 127.0.0.1/localhost are made once with
# keytool in KAFKA_DATA/tls: clients trust KAFKA_DATA/tls/ca.pem (confluent-kafka's ssl.ca.location;
# Java clients' ssl.truststore.type=PEM) or the PKCS12 KAFKA_DATA/tls/truststore.p12 (its password
# in KAFKA_DATA/tls/truststore.password). The project's clients (resources/kafka.py) then take
#   KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<KAFKA_SASL_PORT> KAFKA_SECURITY_PROTOCOL=SASL_SSL
#   KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD (as above) KAFKA_SSL_CA_LOCATION=<KAFKA_DATA>/tls/ca.pem
set -euo pipefail

KAFKA_VERSION=4.1.1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_DATA="${KAFKA_DATA:-$ROOT/.kafka}"
KAFKA_LIB="${KAFKA_LIB:-$HOME/.cache/compliance-platform/kafka-$KAFKA_VERSION/lib}"
KAFKA_JAVA_OPTS="${KAFKA_JAVA_OPTS:--Xmx512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"   # seconds for the broker to answer a request
STOP_TIMEOUT=15    # seconds between TERM and KILL
KAFKA_SASL="${KAFKA_SASL:-0}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"
KAFKA_SASL_PROTOCOL="${KAFKA_SASL_PROTOCOL:-SASL_SSL}"
KAFKA_SASL_USERNAME="${KAFKA_SASL_USERNAME:-\$ConnectionString}"
# Not a secret: the local emulator's default, shaped like an Event Hubs namespace connection string.
KAFKA_SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-Endpoint=sb://local.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=bG9jYWwtZW11bGF0b3Itb25seQ==}"
sasl_on() { [[ "$KAFKA_SASL" == 1 || "$KAFKA_SASL" == true ]]; }

# Absolute paths: the broker's command line (how stop/status recognise it) must not depend on the
# caller's cwd. Only start creates the data dir; without one nothing can be running.
if [[ "${1:-}" == start || -d "$KAFKA_DATA" ]]; then
  mkdir -p "$KAFKA_DATA"
  KAFKA_DATA="$(cd "$KAFKA_DATA" && pwd)"
fi
PROPS="$KAFKA_DATA/server.properties"
TLS="$KAFKA_DATA/tls"
PID_FILE="$KAFKA_DATA/kafka.pid"
LOG="$KAFKA_DATA/broker.log"
# The readiness probe below is a few lines of Python: the project's venv if there is one.
PYTHON="python3"
[[ -x "$ROOT/.venv/bin/python" ]] && PYTHON="$ROOT/.venv/bin/python"

# True if the pid is our broker, alive (checked against its command line, so neither a recycled pid of
# another process nor a not-yet-reaped zombie, whose cmdline is empty, counts as the broker).
is_broker() {
  [[ -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $PROPS"
}

# The pid of the running broker from the pid file, or fail.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && is_broker "$pid" || return 1
  echo "$pid"
}

# The broker jars and their dependencies, copied once from Maven Central with a throwaway pom.
# Downloaded into a staging directory beside KAFKA_LIB and renamed into place, so an interrupted
# download never looks like a complete lib directory. The slf4j 1.7 binding is log4j-slf4j-impl,
# i.e. the log4j2 that Kafka 4 already uses itself (log4j-core comes with kafka-server).
fetch_jars() {
  if [[ -d "$KAFKA_LIB" ]]; then
    [[ -f "$KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar" ]] && return 0
    echo "kafka: $KAFKA_LIB exists but has no kafka_2.13-$KAFKA_VERSION.jar; remove it and retry" >&2
    exit 1
  fi
  echo "kafka: downloading Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIB (once)"
  mkdir -p "$(dirname "$KAFKA_LIB")"
  work="$(mktemp -d)"
  staging="$(mktemp -d "$(dirname "$KAFKA_LIB")/.lib.XXXXXX")"
  # Removed on any exit, including an interrupted or failed download (after a good mv it is gone).
  trap 'rm -rf "$work" "$staging"' EXIT
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.compliance-platform</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>$KAFKA_VERSION</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
EOF
  # Maven's output is kept aside (even -q prints colour codes) and shown only if it fails.
  if ! mvn -q -B -f "$work/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$staging" >"$work/mvn.log" 2>&1; then
    cat "$work/mvn.log" >&2
    echo "kafka: downloading the jars failed" >&2
    exit 1
  fi
  # mv -T refuses to replace a non-empty directory: if a concurrent start won the race, keep its copy.
  mv -T "$staging" "$KAFKA_LIB" 2>/dev/null || [[ -f "$KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar" ]]
}

# Single-node KRaft settings: one voter (this node), replication factors 1 for the internal topics,
# no rebalance delay so tests' consumer groups start at once, listeners on loopback only.
write_config() {
  local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
  local advertised="PLAINTEXT://127.0.0.1:$KAFKA_PORT"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if sasl_on; then
    # the listener is named after its protocol (SASL_SSL or SASL_PLAINTEXT)
    listeners+=",$KAFKA_SASL_PROTOCOL://127.0.0.1:$KAFKA_SASL_PORT"
    advertised+=",$KAFKA_SASL_PROTOCOL://127.0.0.1:$KAFKA_SASL_PORT"
    protocols+=",$KAFKA_SASL_PROTOCOL:$KAFKA_SASL_PROTOCOL"
  fi
  # with SASL it holds the user's password: readable by its owner only (also if an older file was not)
  (umask 077 && : >"$PROPS") && chmod 600 "$PROPS"
  cat >"$PROPS" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$KAFKA_DATA/logs
num.partitions=2
auto.create.topics.enable=true
log.retention.hours=24
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  if sasl_on; then write_sasl_config; fi
  # Broker logs at INFO to stdout, which start() redirects to broker.log.
  cat >"$KAFKA_DATA/log4j2.properties" <<'EOF'
appender.out.type=Console
appender.out.name=OUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.out.ref=OUT
logger.request.name=kafka.request.logger
logger.request.level=WARN
EOF
}

# The SASL listener: PLAIN with one user (the JAAS config lists it as user_<name>="<password>"),
# plus the broker's key store when the protocol is SASL_SSL. The password passes two parsers, Java's
# .properties (backslash escapes, ISO-8859-1) and JAAS's quoted string (backslash and double-quote
# escapes): hence printable ASCII only, and backslashes and quotes escaped for both.
write_sasl_config() {
  local listener password
  listener="$(tr '[:upper:]' '[:lower:]' <<<"$KAFKA_SASL_PROTOCOL")"
  password="$(printf '%s' "$KAFKA_SASL_PASSWORD" | sed -e 's/\\/\\\\\\\\/g' -e 's/"/\\\\"/g')"
  cat >>"$PROPS" <<EOF
sasl.enabled.mechanisms=PLAIN
listener.name.$listener.sasl.enabled.mechanisms=PLAIN
listener.name.$listener.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USERNAME="$password";
EOF
  if [[ "$KAFKA_SASL_PROTOCOL" == SASL_SSL ]]; then
    cat >>"$PROPS" <<EOF
listener.name.$listener.ssl.keystore.type=PKCS12
listener.name.$listener.ssl.keystore.location=$TLS/broker.p12
listener.name.$listener.ssl.keystore.password=$(cat "$TLS/keystore.password")
EOF
  fi
}

# Settings the broker would reject (or misparse) fail here, with a message that never shows the password.
check_sasl_settings() {
  if [[ "$KAFKA_SASL_PROTOCOL" != SASL_SSL && "$KAFKA_SASL_PROTOCOL" != SASL_PLAINTEXT ]]; then
    echo "kafka: KAFKA_SASL_PROTOCOL must be SASL_SSL or SASL_PLAINTEXT, not '$KAFKA_SASL_PROTOCOL'" >&2
    exit 2
  fi
  # the name becomes part of a JAAS option name (user_<name>)
  if [[ ! "$KAFKA_SASL_USERNAME" =~ ^[A-Za-z_\$][A-Za-z0-9_\$.-]*$ ]]; then
    echo "kafka: KAFKA_SASL_USERNAME may hold only letters, digits and _ \$ . - (first: a letter, _ or \$)" >&2
    exit 2
  fi
  if [[ -z "$KAFKA_SASL_PASSWORD" || "$KAFKA_SASL_PASSWORD" == *$'\n'* ]] || LC_ALL=C grep -q '[^ -~]' <<<"$KAFKA_SASL_PASSWORD"; then
    echo "kafka: KAFKA_SASL_PASSWORD must be non-empty printable ASCII on one line" >&2
    exit 2
  fi
}

# A private CA and a broker certificate signed by it (SAN localhost and 127.0.0.1, so the clients'
# host-name verification passes), made once per data dir with keytool. The store passwords are
# random, kept beside the stores (mode 600) and reach keytool through its environment, not argv.
make_tls() {
  [[ -f "$TLS/ca.pem" && -f "$TLS/broker.p12" && -f "$TLS/truststore.p12" ]] && return 0
  rm -rf "$TLS"
  (umask 077
   mkdir -p "$TLS"
   od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$TLS/keystore.password"
   od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$TLS/truststore.password")
  local KT_STOREPASS KT_TRUSTPASS
  KT_STOREPASS="$(cat "$TLS/keystore.password")"
  KT_TRUSTPASS="$(cat "$TLS/truststore.password")"
  export KT_STOREPASS KT_TRUSTPASS
  local key=(-storetype PKCS12 -keyalg RSA -keysize 2048)
  local ca=(-keystore "$TLS/ca.p12" -storetype PKCS12 -storepass:env KT_STOREPASS)
  local broker=(-keystore "$TLS/broker.p12" -storetype PKCS12 -storepass:env KT_STOREPASS)
  if ! {
    keytool -genkeypair -alias ca "${key[@]}" "${ca[@]}" -validity 3650 -dname "CN=compliance-platform local Kafka CA" -ext bc:c &&
    keytool -exportcert -rfc -alias ca "${ca[@]}" -file "$TLS/ca.pem" &&
    keytool -genkeypair -alias broker "${key[@]}" "${broker[@]}" -validity 825 -dname "CN=localhost" &&
    keytool -certreq -alias broker "${broker[@]}" -file "$TLS/broker.csr" &&
    keytool -gencert -alias ca "${ca[@]}" -infile "$TLS/broker.csr" -outfile "$TLS/broker.pem" -rfc -validity 825 \
      -ext SAN=dns:localhost,ip:127.0.0.1 -ext KU=digitalSignature,keyEncipherment -ext EKU=serverAuth &&
    keytool -importcert -noprompt -alias ca -file "$TLS/ca.pem" "${broker[@]}" &&
    keytool -importcert -noprompt -alias broker -file "$TLS/broker.pem" "${broker[@]}" &&
    keytool -importcert -noprompt -alias ca -file "$TLS/ca.pem" -keystore "$TLS/truststore.p12" -storetype PKCS12 -storepass:env KT_TRUSTPASS
  } >"$KAFKA_DATA/keytool.log" 2>&1; then
    cat "$KAFKA_DATA/keytool.log" >&2
    rm -rf "$TLS"
    echo "kafka: making the TLS certificates with keytool failed" >&2
    exit 1
  fi
  rm -f "$TLS/broker.csr" "$KAFKA_DATA/keytool.log"
}

# Kafka 4 is KRaft only: the log dir needs a cluster id and meta.properties before the first start.
format_storage() {
  [[ -f "$KAFKA_DATA/logs/meta.properties" ]] && return 0
  local cluster_id
  cluster_id="$(java -cp "$KAFKA_LIB/*" kafka.tools.StorageTool random-uuid)"
  if ! java -Dlog4j2.configurationFile="$KAFKA_DATA/log4j2.properties" -cp "$KAFKA_LIB/*" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" >>"$LOG" 2>&1; then
    echo "kafka: formatting $KAFKA_DATA/logs failed; tail of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
}

# True if something accepts TCP connections on the loopback port (bash's /dev/tcp, no tools needed).
port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True once the broker answers an ApiVersions request (a bare TCP connect can succeed before the
# broker is unfenced and serving). Raw protocol, so it needs only python3, not confluent_kafka.
broker_answers() {
  "$PYTHON" - "$KAFKA_PORT" <<'EOF' 2>/dev/null
import socket, struct, sys
client = b"kafka.sh"
req = struct.pack(">hhih", 18, 0, 7, len(client)) + client  # ApiVersions v0, correlation id 7
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    s.settimeout(2)
    s.sendall(struct.pack(">i", len(req)) + req)
    head = s.recv(8)
sys.exit(0 if len(head) == 8 and struct.unpack(">ii", head)[1] == 7 else 1)
EOF
}

start() {
  local pid
  if pid="$(running_pid)"; then
    echo "kafka: already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  # A port held by another process would make our broker exit, or worse, let the probe below
  # mistake that other process for our broker.
  local port ports=("$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT")
  if sasl_on; then
    check_sasl_settings
    ports+=("$KAFKA_SASL_PORT")
  fi
  for port in "${ports[@]}"; do
    if port_taken "$port"; then
      echo "kafka: 127.0.0.1:$port is already in use (not by the broker of $KAFKA_DATA)" >&2
      exit 1
    fi
  done
  fetch_jars
  if sasl_on && [[ "$KAFKA_SASL_PROTOCOL" == SASL_SSL ]]; then make_tls; fi
  write_config
  format_storage
  # nohup + stdin from /dev/null: the broker outlives this script and does not hold the caller's pipes.
  nohup java $KAFKA_JAVA_OPTS -Dlog4j2.configurationFile="$KAFKA_DATA/log4j2.properties" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$PROPS" >>"$LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  until broker_answers && { ! sasl_on || port_taken "$KAFKA_SASL_PORT"; }; do
    if ! is_broker "$pid"; then
      echo "kafka: broker exited during startup; tail of $LOG:" >&2
      tail -n 40 "$LOG" >&2
      rm -f "$PID_FILE"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "kafka: broker not answering on 127.0.0.1:$KAFKA_PORT after ${START_TIMEOUT}s; tail of $LOG:" >&2
      tail -n 40 "$LOG" >&2
      stop >&2  # a failed start leaves no half-started broker behind
      exit 1
    fi
    sleep 0.5
  done
  echo "kafka: listening on 127.0.0.1:$KAFKA_PORT"
  if sasl_on; then
    echo "kafka: $KAFKA_SASL_PROTOCOL listener on 127.0.0.1:$KAFKA_SASL_PORT (SASL PLAIN, user $KAFKA_SASL_USERNAME)"
    if [[ "$KAFKA_SASL_PROTOCOL" == SASL_SSL ]]; then echo "kafka: clients trust $TLS/ca.pem (or $TLS/truststore.p12)"; fi
  fi
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    echo "kafka: not running"
    rm -f "$PID_FILE"
    return 0
  fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while is_broker "$pid" && ((SECONDS < deadline)); do sleep 0.5; done
  if is_broker "$pid"; then
    echo "kafka: no exit ${STOP_TIMEOUT}s after TERM, sending KILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while is_broker "$pid"; do sleep 0.2; done
  fi
  rm -f "$PID_FILE"
  echo "kafka: stopped"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    echo "kafka: running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
  else
    echo "kafka: not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: [KAFKA_SASL=1] bash scripts/kafka.sh start|stop|status" >&2; exit 2 ;;
esac
