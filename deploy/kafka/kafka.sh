#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1:9092/9093, with the
# worker's secured listeners: 9094 SASL_SSL (SCRAM), 9095 mutual TLS, 9096 OAUTHBEARER.
#   kafka.sh up     start it (fetching the jars on first use), wait until a client can list
#                   topics, create the claim topics (intake's inbound ones, history's
#                   internal ones), the users `scrubber` (the worker), `intake` and `review`
#                   (the review page) with their least-privilege ACLs, and write
#                   .kafka/secure{,-intake,-review}.env (the settings each needs to connect
#                   on 9094 as its user); a running broker is left as it is
#   kafka.sh down   SIGTERM the broker and wait for it to exit; the data is kept
#   kafka.sh clean  down, then delete the data
#   kafka.sh grant / revoke   add a worker's ACLs / remove ACLs (tests)
# Everything lives under .kafka/ at the repository root. All three are safe to repeat.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
state="$root/.kafka"
libs="$state/libs"
data="$state/data"
logs="$state/logs"
pidfile="$state/kafka.pid"
props="$state/server.properties"
tls="$state/tls"
secrets="$state/secrets"
bootstrap="127.0.0.1:9092"
group="${SCRUBBER_GROUP_ID:-claim-scrubber}"
partitions="${SCRUBBER_TOPIC_PARTITIONS:-6}"
topics=(
  "${SCRUBBER_TOPIC_INPUT:-claims.submitted}"
  "${SCRUBBER_TOPIC_CLEAN:-claims.clean}"
  "${SCRUBBER_TOPIC_REVIEW:-claims.needs-review}"
  "${SCRUBBER_TOPIC_DEAD_LETTER:-claims.dead-letter}"
)
# Claim history's internal topics (contract section 10): the input re-keyed by patient, and
# the compacted changelog with as many partitions.
by_patient="${SCRUBBER_TOPIC_BY_PATIENT:-claims.by-patient}"
history="${SCRUBBER_TOPIC_HISTORY:-claims.history}"
# The dead-letter replay ledger (contract section 11): compacted, keyed by dead letter.
replayed="${SCRUBBER_TOPIC_DEAD_LETTER:-claims.dead-letter}.replayed"

say() { printf 'kafka: %s\n' "$*" >&2; }

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka.Kafka'; then
    echo "$pid"
  else
    return 1
  fi
}

fetch_jars() {
  local stamp="$libs/.pom.sha256" want
  want=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  say "fetching Kafka jars from Maven Central (first run only)"
  rm -rf "$libs"
  mkdir -p "$libs"
  mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs"
  echo "$want" >"$stamp"
}

java_run() {
  java -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$here/log4j2-tools.properties" \
    -cp "$libs/*" "$@"
}

write_props() {
  sed -e "s#@DATA@#$data#" -e "s#@STATE@#$state#" "$here/server.properties" >"$props"
}

# A CA, the broker's certificate for localhost/127.0.0.1 (a PEM keystore: key + certificate)
# and a client certificate for CN=scrubber (mutual TLS), made once with openssl.
tls_material() {
  [ -f "$tls/broker.pem" ] && [ -f "$tls/scrubber.crt" ] && return 0
  say "making TLS material in $tls"
  rm -rf "$tls"
  mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=claim-scrubber-local-ca" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout broker.key -out broker.csr 2>/dev/null
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
      -copy_extensions copy -out broker.crt 2>/dev/null
    cat broker.key broker.crt >broker.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=scrubber" -keyout scrubber.key \
      -out scrubber.csr 2>/dev/null
    openssl x509 -req -in scrubber.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
      -out scrubber.crt 2>/dev/null
    chmod 600 ca.key broker.key broker.pem scrubber.key
    rm -f broker.csr scrubber.csr
  )
}

# Random passwords for the SCRAM users, made once, readable by the owner only.
password_of() {
  local file="$secrets/$1.password"
  if ! [ -s "$file" ]; then
    mkdir -p "$secrets"
    chmod 700 "$secrets"
    (umask 077 && openssl rand -hex 24 >"$file")
  fi
  cat "$file"
}

# The SCRAM users: the super user, then one per stage (the worker, intake, the review page).
users=(admin scrubber intake review)

scram_users() {
  local user password
  for user in "${users[@]}"; do
    password=$(password_of "$user")
    printf -- "--add-scram\nSCRAM-SHA-256=[name=%s,password=%s]\n--add-scram\nSCRAM-SHA-512=[name=%s,password=%s]\n" \
      "$user" "$password" "$user" "$password"
  done
}

format_storage() {
  [ -f "$data/meta.properties" ] && return 0
  say "formatting a new single-node cluster in $data"
  mkdir -p "$data"
  local cluster_id scram=()
  cluster_id=$(java_run kafka.tools.StorageTool random-uuid)
  mapfile -t scram < <(scram_users)
  java_run kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$props" \
    "${scram[@]}" >/dev/null
  touch "$data/.scram-users" "$data/.scram-stage-users"
}

acl() { java_run org.apache.kafka.tools.AclCommand --bootstrap-server "$bootstrap" --add "$@" >/dev/null; }

# allow USER ACL-ARGS...: one ACL for USER, added in the background (each is a JVM start);
# allowed waits for them all and fails if one did.
acl_pids=()
allow() {
  local user=$1
  shift
  acl --allow-principal "User:$user" "$@" &
  acl_pids+=($!)
}
allowed() {
  local p
  for p in "${acl_pids[@]}"; do wait "$p"; done
  acl_pids=()
}

# add_scram_users USER...: credentials for users of a cluster formatted before they existed.
add_scram_users() {
  local user password mechanism pids=()
  for user in "$@"; do
    password=$(password_of "$user")
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do  # one credential per request
      java_run kafka.admin.ConfigCommand --bootstrap-server "$bootstrap" --alter \
        --entity-type users --entity-name "$user" \
        --add-config "$mechanism=[password=$password]" >/dev/null &
      pids+=($!)
    done
  done
  for p in "${pids[@]}"; do wait "$p"; done
}

# What each stage's user may do, and nothing else (docs/operating/kafka-security.md): `scrubber`
# reads the input topic and its group, writes the three outputs, uses the transactional ids
# with the group's prefix, reads the four topics' configs; `intake` and `review` likewise.
secure_users() {
  if ! [ -f "$data/.scram-users" ]; then  # a cluster formatted before the users existed
    add_scram_users admin scrubber
    touch "$data/.scram-users"
  fi
  if ! [ -f "$data/.scram-stage-users" ]; then  # ... before intake and review had their own
    add_scram_users intake review
    touch "$data/.scram-stage-users"
  fi
  if ! [ -f "$data/.secure-v2" ]; then
    say "granting user scrubber its ACLs"
    grant scrubber "$group" "${topics[@]}"
    grant_history scrubber "$group"
    touch "$data/.secure-v2"
  fi
  if ! [ -f "$data/.secure-stages-v1" ]; then
    say "granting users intake and review their ACLs"
    grant_intake intake "$group.intake"
    grant_review review
    touch "$data/.secure-stages-v1"
  fi
}

# grant_intake USER GROUP: read the inbound topics and the group, write claims.submitted and
# the dead letters, with the group's transactional ids; the configs of all four.
grant_intake() {
  local user=$1 group=$2
  allow "$user" --operation Read --operation Describe --operation DescribeConfigs \
    --topic "${inbound_topics[0]}" --topic "${inbound_topics[1]}"
  allow "$user" --operation Write --operation Describe --operation DescribeConfigs \
    --topic "${topics[0]}" --topic "${topics[3]}"
  allow "$user" --operation Read --group "$group"
  allow "$user" --operation Write --operation Describe \
    --transactional-id "$group-" --resource-pattern-type prefixed
  allowed
}

# grant_review USER: read the two result topics the review page shows, in no group.
grant_review() {
  allow "$1" --operation Read --operation Describe --topic "${topics[2]}" --topic "${topics[1]}"
  allowed
}

# grant_history USER GROUP: what history on adds (the changelog is PHI-derived: grant it only
# to the worker): write and read the re-keyed input and the changelog, the scrubbing group,
# and its transactional ids.
grant_history() {
  local user=$1 group=$2
  allow "$user" --operation Describe --operation Read --operation Write \
    --operation DescribeConfigs --topic "$by_patient" --topic "$history"
  allow "$user" --operation Read --group "$group.by-patient"
  allow "$user" --operation Write --operation Describe \
    --transactional-id "$group.by-patient-$by_patient-" --resource-pattern-type prefixed
  allowed
}

# grant USER GROUP INPUT CLEAN REVIEW DEAD [WITHOUT]: the ACLs a worker needs, all of them or
# all but one (WITHOUT: read-input, describe-configs, write-outputs, read-group,
# transactional-id; the tests use it to show each missing permission's error).
grant() {
  local user=$1 group=$2 input=$3 clean=$4 review=$5 dead=$6 without=${7:-}
  local input_ops=(--operation Describe) output_ops=(--operation Describe)
  [ "$without" != read-input ] && input_ops+=(--operation Read)
  [ "$without" != write-outputs ] && output_ops+=(--operation Write)
  if [ "$without" != describe-configs ]; then
    input_ops+=(--operation DescribeConfigs)
    output_ops+=(--operation DescribeConfigs)
  fi
  allow "$user" "${input_ops[@]}" --topic "$input"
  allow "$user" "${output_ops[@]}" --topic "$clean" --topic "$review" --topic "$dead"
  if [ "$without" != read-group ]; then
    allow "$user" --operation Read --group "$group"
  fi
  if [ "$without" != transactional-id ]; then
    allow "$user" --operation Write --operation Describe \
      --transactional-id "$group-$input-" --resource-pattern-type prefixed
  fi
  allowed
}

# secure_env USER WHAT: the settings of one stage on the SASL_SSL listener as its own user.
secure_env() {
  local user=$1 what=$2
  password_of "$user" >/dev/null
  cat <<ENV
# $what on the local broker's SASL_SSL listener as the least-privileged user $user
# (make run SECURE=1 starts all three stages so).
export SCRUBBER_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9094
export SCRUBBER_KAFKA_SECURITY_PROTOCOL=SASL_SSL
export SCRUBBER_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export SCRUBBER_KAFKA_SASL_USERNAME=$user
export SCRUBBER_KAFKA_SASL_PASSWORD_FILE=$secrets/$user.password
export SCRUBBER_KAFKA_SSL_CA_FILE=$tls/ca.pem
ENV
}

write_secure_env() {
  secure_env scrubber "The worker" >"$state/secure.env"
  secure_env intake "Intake" >"$state/secure-intake.env"
  secure_env review "The review page" >"$state/secure-review.env"
}

topic_cmd() { java_run org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" "$@"; }

# The listener answers TCP before a client tool (a JVM start of its own) is worth launching.
port_open() { (exec 3<>"/dev/tcp/${bootstrap%:*}/${bootstrap##*:}") 2>/dev/null; }

# Sets existing_topics: the broker's answer to the listing that proved it ready.
existing_topics=""
# A broker stopped uncleanly recovers every partition's log first: on a loaded machine with
# many topics that takes minutes, not seconds, so the wait is long and says it is waiting.
wait_ready() {
  local started=$SECONDS limit=240 said=$SECONDS
  until port_open && existing_topics=$(topic_cmd --list 2>/dev/null); do
    if ! running_pid >/dev/null; then
      say "broker exited during start-up; last lines of $logs/server.log:"
      tail -n 20 "$logs/server.log" >&2 || true
      return 1
    fi
    if [ $((SECONDS - started)) -ge $limit ]; then
      say "broker did not accept clients within $limit s; last lines of $logs/server.log:"
      tail -n 20 "$logs/server.log" >&2 || true
      return 1
    fi
    if [ $((SECONDS - said)) -ge 30 ]; then
      say "still waiting for the broker to accept clients ($((SECONDS - started)) s)"
      said=$SECONDS
    fi
    sleep 1
  done
}

# The three output topics hold 2 MiB records: a dead letter carries the input record whole as
# base64 (4/3 of its bytes), and the worker refuses to start unless the dead letter of the
# largest record the input topic accepts (the broker default, 1 MiB) fits (contract section 4).
output_max_message_bytes=2097152

# Intake's inbound topics (contract section 7) keep the broker's default record size.
inbound_topics=(
  "${SCRUBBER_TOPIC_INBOUND_X12:-claims.inbound.x12}"
  "${SCRUBBER_TOPIC_INBOUND_FHIR:-claims.inbound.fhir}"
)

create_topics() {
  local existing=$existing_topics pids=() t config
  for t in "${topics[@]}" "${inbound_topics[@]}"; do
    config=()
    if [ "$t" != "${topics[0]}" ] && ! printf '%s\n' "${inbound_topics[@]}" | grep -qxF "$t"; then
      config=(--config "max.message.bytes=$output_max_message_bytes")
    fi
    if grep -qxF "$t" <<<"$existing"; then
      if [ ${#config[@]} -gt 0 ] && ! [ -f "$data/.output-limits-v1" ]; then
        # An output topic created by an earlier version of this script: raise its limit.
        java_run kafka.admin.ConfigCommand --bootstrap-server "$bootstrap" --alter \
          --entity-type topics --entity-name "$t" \
          --add-config "max.message.bytes=$output_max_message_bytes" >/dev/null &
        pids+=($!)
      fi
      continue
    fi
    topic_cmd --create --if-not-exists --topic "$t" --partitions "$partitions" --replication-factor 1 \
      "${config[@]}" >/dev/null &
    pids+=($!)
  done
  if ! grep -qxF "$by_patient" <<<"$existing"; then
    topic_cmd --create --if-not-exists --topic "$by_patient" --partitions "$partitions" \
      --replication-factor 1 >/dev/null &
    pids+=($!)
  fi
  for t in "$history" "$replayed"; do
    if ! grep -qxF "$t" <<<"$existing"; then
      topic_cmd --create --if-not-exists --topic "$t" --partitions "$partitions" \
        --replication-factor 1 --config cleanup.policy=compact >/dev/null &
      pids+=($!)
    fi
  done
  for p in "${pids[@]}"; do wait "$p"; done
  touch "$data/.output-limits-v1"
}

up() {
  mkdir -p "$state" "$logs"
  fetch_jars
  if pid=$(running_pid); then
    say "broker already running (pid $pid)"
  else
    tls_material
    write_props
    format_storage
    say "starting broker on $bootstrap"
    KAFKA_LOGS_DIR="$logs" nohup java -Xms256m -Xmx512m -XX:+UseG1GC \
      -Dkafka.logs.dir="$logs" \
      -Dlog4j2.configurationFile="$here/log4j2.properties" \
      -cp "$libs/*" kafka.Kafka "$props" >"$logs/stdout.log" 2>&1 &
    echo $! >"$pidfile"
  fi
  wait_ready
  create_topics
  secure_users
  write_secure_env
  say "ready on $bootstrap (secured: 9094 SASL_SSL, 9095 mutual TLS, 9096 OAUTHBEARER;" \
    "settings in .kafka/secure*.env); topics: ${topics[*]} ${inbound_topics[*]} $by_patient" \
    "$history $replayed ($partitions partitions)"
}

down() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$pidfile"
    say "broker not running"
    return 0
  fi
  say "stopping broker (pid $pid)"
  kill -TERM "$pid"
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      say "broker did not exit within 60 s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
  say "stopped"
}

clean() {
  down
  rm -rf "$data" "$logs" "$props" "$state"/secure*.env
  say "data deleted"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  clean) clean ;;
  grant) shift; grant "$@" ;;
  revoke) shift; java_run org.apache.kafka.tools.AclCommand --bootstrap-server "$bootstrap" \
    --remove --force "$@" >/dev/null ;;
  *) echo "usage: $0 up|down|clean|grant USER GROUP INPUT CLEAN REVIEW DEAD [WITHOUT]|revoke ACL-ARGS" >&2
     exit 2 ;;
esac
