#!/usr/bin/env bash
# Follows docs/setup.md on one machine: a primary site (registry + primary
# georeg) and a secondary site (registry + secondary georeg), both on
# loopback, in a throwaway directory. Each step below is the page's step of
# the same number, with the same commands; what differs on one machine:
#   - each site's /etc/georeg and /etc/docker/registry are folders here;
#   - there is no georeg user: files belong to whoever runs this;
#   - registries and `georeg serve` are started as processes, not units;
#   - the image is pushed with curl and a token `georeg token` signs.
# It checks that the image arrives on the secondary with the same digest and
# that `georeg verify` says so.
#
#   tests/walkthrough.sh [GEOREG_BINARY]    (default: target/debug/georeg, built)
set -euo pipefail
cd "$(dirname "$0")/.."

georeg=${1:-}
if [ -z "$georeg" ]; then
    cargo build --locked --quiet
    georeg=$PWD/target/debug/georeg
fi
registry=$(command -v docker-registry || true)
[ -n "$registry" ] || { echo "walkthrough: docker-registry is needed: apt-get install -y docker-registry" >&2; exit 1; }

work=$(mktemp -d /tmp/georeg-walkthrough-XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${keep:-}" = 1 ]; then echo "walkthrough: files kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() { keep=1; echo "walkthrough: FAILED: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # what, seconds, command...
    local what=$1 seconds=$2; shift 2
    for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "$what within ${seconds}s"
}

p_reg=$(free_port) s_reg=$(free_port) p_geo=$(free_port) s_geo=$(free_port)
primary_etc=$work/primary/etc/georeg secondary_etc=$work/secondary/etc/georeg
mkdir -p "$primary_etc" "$secondary_etc" "$work/primary/registry" "$work/secondary/registry"

# ---- 1. The key pair shared by all nodes
(cd "$work" && openssl req -x509 -newkey rsa:4096 -nodes -days 3650 -subj "/CN=georeg token signer" \
    -keyout gitlab-registry.key -out gitlab-registry.crt 2>/dev/null)
for GEOREG_ETC in "$primary_etc" "$secondary_etc"; do
    install -m 0600 "$work/gitlab-registry.key" "$GEOREG_ETC/gitlab-registry.key"
    install -m 0644 "$work/gitlab-registry.crt" "$GEOREG_ETC/gitlab-registry.crt"
done

# ---- 3. The secret the primary registry sends
GEOREG_ETC=$primary_etc
printf 'S%s\n' "$(head -c 64 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 31)" >"$GEOREG_ETC/notification-secret"
chmod 0640 "$GEOREG_ETC/notification-secret"
secret=$(cat "$GEOREG_ETC/notification-secret")

# ---- 2 and 3. The registries: token auth with the shared certificate;
# deletes enabled; the primary's notifications to the primary georeg.
registry_config() { # site port [notifications]
    cat <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $work/$1/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$2
auth:
  token:
    realm: http://127.0.0.1:1/jwt/auth
    service: container_registry
    issuer: gitlab-issuer
    rootcertbundle: $work/gitlab-registry.crt
${3:-}
YAML
}
registry_config primary "$p_reg" "notifications:
  endpoints:
    - name: geo_event
      url: http://127.0.0.1:$p_geo/api/v4/container_registry_event/events
      timeout: 500ms
      threshold: 5
      backoff: 1s
      headers:
        Authorization: [$secret]" >"$work/primary/config.yml"
registry_config secondary "$s_reg" >"$work/secondary/config.yml"
for site in primary secondary; do
    "$registry" serve "$work/$site/config.yml" >"$work/$site-registry.log" 2>&1 &
    pids+=($!)
done
wait_for "the primary registry to answer" 30 curl -fs -o /dev/null "http://127.0.0.1:$p_reg/"
wait_for "the secondary registry to answer" 30 curl -fs -o /dev/null "http://127.0.0.1:$s_reg/"

# ---- 4. The primary georeg, from the example configuration
GEOREG_ETC=$primary_etc
cp packaging/georeg-primary.toml "$GEOREG_ETC/georeg.toml"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$GEOREG_ETC/admin-token"
chmod 0640 "$GEOREG_ETC/admin-token"
sed -i -e "s|^listen = .*|listen = \"127.0.0.1:$p_geo\"|" \
    -e "s|^url = .*|url = \"http://127.0.0.1:$p_reg\"|" \
    -e "s|^state_file = .*|state_file = \"$work/primary/state.sqlite3\"|" \
    -e "s|/etc/georeg/|$GEOREG_ETC/|" "$GEOREG_ETC/georeg.toml"
"$georeg" --config "$GEOREG_ETC/georeg.toml" check >"$work/primary-check.log" 2>&1 || fail "georeg check on the primary"
"$georeg" --config "$GEOREG_ETC/georeg.toml" serve >"$work/primary-georeg.log" 2>&1 &
pids+=($!)
wait_for "the primary georeg to be ready" 30 curl -fs "http://127.0.0.1:$p_geo/-/readiness"

# ---- 5. The secondary georeg
GEOREG_ETC=$secondary_etc
cat >"$GEOREG_ETC/georeg.toml" <<TOML
node_name = "secondary-1"
role = "secondary"
listen = "127.0.0.1:$s_geo"
state_file = "$work/secondary/state.sqlite3"

[registry]
url = "http://127.0.0.1:$s_reg"
key_file = "$GEOREG_ETC/gitlab-registry.key"

[replication]
primary_api_url = "http://127.0.0.1:$p_reg/"
primary_node_url = "http://127.0.0.1:$p_geo"
TOML
"$georeg" --config "$GEOREG_ETC/georeg.toml" check >"$work/secondary-check.log" 2>&1 || fail "georeg check on the secondary"
"$georeg" --config "$GEOREG_ETC/georeg.toml" serve >"$work/secondary-georeg.log" 2>&1 &
pids+=($!)
wait_for "the secondary georeg to be ready" 30 curl -fs "http://127.0.0.1:$s_geo/-/readiness"

# ---- 6. An image pushed to the primary arrives on the secondary
token=$("$georeg" --config "$primary_etc/georeg.toml" token --scope repository:group/app:push,pull)
push_blob() { # file
    local digest location
    digest=sha256:$(sha256sum "$1" | cut -d' ' -f1)
    location=$(curl -fsS -D - -o /dev/null -X POST -H "Authorization: Bearer $token" \
        "http://127.0.0.1:$p_reg/v2/group/app/blobs/uploads/" | tr -d '\r' | sed -n 's/^Location: //Ip')
    case $location in http*) ;; *) location="http://127.0.0.1:$p_reg$location" ;; esac
    case $location in *\?*) location="$location&digest=$digest" ;; *) location="$location?digest=$digest" ;; esac
    curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/octet-stream' \
        --data-binary "@$1" "$location"
    echo "$digest"
}
head -c 100000 /dev/urandom >"$work/layer"
printf '{"architecture":"amd64","os":"linux"}' >"$work/image-config"
layer=$(push_blob "$work/layer")
config=$(push_blob "$work/image-config")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
    "$config" "$(stat -c %s "$work/image-config")" "$layer" "$(stat -c %s "$work/layer")" >"$work/manifest"
curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$work/manifest" \
    "http://127.0.0.1:$p_reg/v2/group/app/manifests/v1"
want=sha256:$(sha256sum "$work/manifest" | cut -d' ' -f1)
s_token=$("$georeg" --config "$secondary_etc/georeg.toml" token --scope repository:group/app:pull)
digest_on_secondary() {
    curl -fsS -I -H "Authorization: Bearer $s_token" \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://127.0.0.1:$s_reg/v2/group/app/manifests/v1" | tr -d '\r' | sed -n 's/^Docker-Content-Digest: //Ip'
}
arrived() { [ "$(digest_on_secondary)" = "$want" ]; }
wait_for "group/app:v1 on the secondary with the primary's digest" 60 arrived
"$georeg" --config "$secondary_etc/georeg.toml" status >"$work/status.log" 2>&1 || fail "georeg status"
out=$("$georeg" --config "$secondary_etc/georeg.toml" verify group/app 2>&1) || fail "georeg verify: $out"
grep -q "group/app: verified" <<<"$out" || fail "georeg verify said: $out"
echo "walkthrough: ok: group/app:v1 ($want) pushed to the primary arrived on the secondary identical, and verified"
