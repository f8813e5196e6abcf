#!/usr/bin/env bash
# The .deb as an operator gets it: builds it, installs it with dpkg on this
# machine, checks what it installed, runs the installed georeg (--version,
# `check` on the shipped config and against two real registries, `serve` as
# the georeg user), then removes and purges it and checks what remains.
# Prints one line per check and ends with "N passed, M failed"; exits 1
# when anything failed.
#
# Needs root on Debian, with docker-registry, openssl and curl (.ci/run
# installs them). Whatever happens, it stops what it started and purges the
# package. It refuses to run where georeg is installed already, except on CI
# (CI=true), where such a package can only be a killed run's leftover.
set -uo pipefail
cd "$(dirname "$0")/../.."

passed=0
failed=0
ok() {
    echo "ok      $*"
    passed=$((passed + 1))
}
bad() {
    echo "FAILED  $*"
    failed=$((failed + 1))
}
note() { echo "note    $*"; }
# check NAME COMMAND...: ok or FAILED by the command's exit status.
check() {
    local name=$1
    shift
    if "$@" >>"$log" 2>&1; then ok "$name"; else bad "$name"; fi
}
finish() {
    if [ "$failed" -gt 0 ]; then
        echo "--- last lines of $log:"
        tail -n 40 "$log"
        echo "---"
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

if [ "$(id -u)" -ne 0 ]; then
    echo "test-deb: needs root: it installs the package with dpkg"
    exit 1
fi
if dpkg-query -W georeg >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        # Left by a run that was killed before its cleanup.
        echo "note    purging a georeg package left on this CI machine"
        dpkg --purge georeg >/dev/null
    else
        echo "test-deb: a georeg package is on this machine already; this test would purge it. Remove it first."
        exit 1
    fi
fi

work=$(mktemp -d /tmp/georeg-test-deb.XXXXXX)
log="$work/log"
# The georeg user reads its key and configuration in here.
chmod 0755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    if dpkg-query -W georeg >/dev/null 2>&1; then
        dpkg --purge georeg >/dev/null 2>&1
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)

# ---- build, with Debian's own toolchain at the oldest version Cargo.toml
# allows (rust-version): what an administrator installs with apt-get.
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
if /usr/bin/rustc --version 2>/dev/null | grep -q "^rustc $msrv\." && /usr/bin/cargo --version >/dev/null 2>&1; then
    export CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="$PWD/target/debian-toolchain"
    ok "the package is built with Debian's toolchain: $(/usr/bin/rustc --version)"
else
    bad "Debian's rustc $msrv is not /usr/bin/rustc: on Debian 12, apt-get install the $msrv versions of rustc-web and cargo-web (.ci/run does); on Debian 13, rustc and cargo"
    finish
fi
deb=$(packaging/build-deb.sh "$work/out" 2>>"$log" | tail -n 1)
if [ "$deb" = "$work/out/georeg_${version}_${arch}.deb" ] && [ -f "$deb" ]; then
    ok "packaging/build-deb.sh builds georeg_${version}_${arch}.deb"
else
    bad "packaging/build-deb.sh builds georeg_${version}_${arch}.deb (got '$deb')"
    finish
fi
contents=$(dpkg-deb --contents "$deb")
for f in /usr/bin/georeg /etc/georeg/georeg.toml /usr/lib/systemd/system/georeg.service \
    /usr/share/doc/georeg/copyright /usr/share/doc/georeg/changelog.gz /usr/share/man/man1/georeg.1.gz \
    /usr/share/man/man5/georeg.toml.5.gz /usr/share/doc/georeg/docs/configuration.md \
    /usr/share/doc/georeg/examples/georeg-primary.toml; do
    check "the package holds $f" grep -q " \.$f\$" <<<"$contents"
done
dpkg-deb --extract "$deb" "$work/extract"
control=$(dpkg-deb --field "$deb")
check "the package depends on libgcc-s1 (georeg links libgcc_s)" grep -q '^Depends:.*libgcc-s1' <<<"$control"
dpkg-deb --control "$deb" "$work/control"
check "the package carries md5sums for every file" test "$(wc -l <"$work/control/md5sums")" -eq "$(grep -c '^-' <<<"$contents")"
check "the package's ./ is mode 755" grep -q '^drwxr-xr-x root/root .* \./$' <<<"$contents"
needed=$(objdump -p "$work/extract/usr/bin/georeg" | awk '/NEEDED/ {print $2}' | sort | tr '\n' ' ')
unexpected=$(tr ' ' '\n' <<<"$needed" | grep -vE '^(libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|ld-linux.*|)$')
if [ -z "$unexpected" ]; then
    ok "the binary links only libc, libm and libgcc_s (no OpenSSL, no system SQLite): $needed"
else
    bad "the binary links more than libc, libm and libgcc_s: $unexpected"
fi

# ---- upgrade from an older package: the operator's config and state stay
previous="${version}~prev"
old=$(GEOREG_DEB_VERSION="$previous" packaging/build-deb.sh "$work/old" 2>>"$log" | tail -n 1)
check "an older package ($previous) installs" env DEBIAN_FRONTEND=noninteractive dpkg --install "$old"
echo "# edited by the operator" >>/etc/georeg/georeg.toml
touch /var/lib/georeg/operator-file
check "dpkg --install of $version upgrades it" env DEBIAN_FRONTEND=noninteractive dpkg --install "$deb"
check "after the upgrade dpkg has version $version" test "$(dpkg-query -W -f='${Version}' georeg)" = "$version"
check "after the upgrade the new binary runs" grep -qx "georeg $version" <<<"$(/usr/bin/georeg --version 2>&1)"
check "the upgrade kept the operator's config" grep -qx "# edited by the operator" /etc/georeg/georeg.toml
check "the upgrade kept the state directory's files" test -f /var/lib/georeg/operator-file
check "postinst restarts a running service on upgrade (try-restart)" grep -q "systemctl try-restart georeg.service" \
    /var/lib/dpkg/info/georeg.postinst
sed -i '/^# edited by the operator$/d' /etc/georeg/georeg.toml
rm -f /var/lib/georeg/operator-file

# ---- install
check "dpkg --install installs it" env DEBIAN_FRONTEND=noninteractive dpkg --install "$deb"
check "/usr/bin/georeg --version says $version" grep -qx "georeg $version" <<<"$(/usr/bin/georeg --version 2>&1)"
IFS=: read -r _ _ uid gid _ home shell <<<"$(getent passwd georeg)"
if [ -n "${uid:-}" ] && [ "$uid" -lt 1000 ] && [ "$home" = /var/lib/georeg ] && [ "$shell" = /usr/sbin/nologin ]; then
    ok "postinst created the system user georeg (uid $uid, home $home, no login)"
else
    bad "postinst created the system user georeg (got: $(getent passwd georeg))"
fi
check "the group georeg exists" getent group georeg
check "dpkg knows /etc/georeg/georeg.toml as a conffile" \
    grep -q "/etc/georeg/georeg.toml" <<<"$(dpkg-query -W -f='${Conffiles}' georeg)"
check "the config is root:georeg 640" test "$(stat -c '%U:%G %a' /etc/georeg/georeg.toml)" = "root:georeg 640"
check "the state directory is georeg:georeg 750" test "$(stat -c '%U:%G %a' /var/lib/georeg)" = "georeg:georeg 750"
unit=/usr/lib/systemd/system/georeg.service
missing=""
for line in "ExecStart=/usr/bin/georeg --config /etc/georeg/georeg.toml serve" Restart=on-failure User=georeg \
    StateDirectory=georeg ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes \
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" SystemCallFilter=@system-service CapabilityBoundingSet=; do
    grep -qxF "$line" "$unit" || missing="$missing [$line]"
done
if [ -z "$missing" ]; then ok "the unit runs georeg serve as georeg, hardened"; else bad "the unit lacks$missing"; fi
check "the unit is installed but not enabled" test ! -e /etc/systemd/system/multi-user.target.wants/georeg.service
if command -v systemd-analyze >/dev/null 2>&1; then
    check "systemd-analyze verify accepts the unit" systemd-analyze verify "$unit"
else
    note "systemd-analyze is not installed here: the unit's syntax was not verified"
fi
uid_before=$uid
check "installing again (postinst is idempotent)" env DEBIAN_FRONTEND=noninteractive dpkg --install "$deb"
check "the georeg user kept its uid" test "$(id -u georeg)" = "$uid_before"

# ---- the shipped config: georeg check explains what is missing
out=$(/usr/bin/georeg check 2>&1)
code=$?
echo "$out" >>"$log"
if [ "$code" -eq 2 ] && grep -q "^FAILED  config .*registry.key_file: .*copy gitlab-registry.key from the primary" <<<"$out"; then
    ok "georeg check on the shipped config explains the missing key (exit 2)"
else
    bad "georeg check on the shipped config explains the missing key (exit $code: $out)"
fi

# ---- against two real registries, as the georeg user
free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}
# wait_for URL: until curl gets any HTTP answer (401 from a registry), 20 s at most.
wait_for() {
    for _ in $(seq 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" != 000 ] && return 0
        sleep 0.1
    done
    return 1
}
start_registry() {
    local name=$1 port=$2
    mkdir -p "$work/$name"
    cat >"$work/$name.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/$name
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: georeg-test-deb-$name
auth:
  token:
    realm: http://127.0.0.1:1/jwt/auth
    service: container_registry
    issuer: gitlab-issuer
    rootcertbundle: $work/gitlab-registry.crt
YAML
    docker-registry serve "$work/$name.yml" >>"$work/$name.log" 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$port/v2/"
}
openssl genrsa -traditional -out "$work/gitlab-registry.key" 2048 >>"$log" 2>&1
openssl req -new -x509 -key "$work/gitlab-registry.key" -subj /CN=georeg-test-deb -days 30 \
    -out "$work/gitlab-registry.crt" >>"$log" 2>&1
chown georeg:georeg "$work/gitlab-registry.key"
chmod 0600 "$work/gitlab-registry.key"
primary_port=$(free_port) && start_registry primary "$primary_port"
secondary_port=$(free_port) && start_registry secondary "$secondary_port"
check "two docker-registry processes answer on loopback" \
    wait_for "http://127.0.0.1:${secondary_port:-1}/v2/"
listen_port=$(free_port)
cat >"$work/georeg.toml" <<TOML
node_name = "deb-test"
role = "secondary"
listen = "127.0.0.1:$listen_port"
state_file = "/var/lib/georeg/state.sqlite3"

[registry]
url = "http://127.0.0.1:$secondary_port"
key_file = "$work/gitlab-registry.key"

[notifications]
secret = "DebTestSecret1"

[replication]
primary_api_url = "http://127.0.0.1:$primary_port"
TOML
chmod 0644 "$work/georeg.toml"
as_georeg=(setpriv --reuid=georeg --regid=georeg --init-groups)
out=$("${as_georeg[@]}" /usr/bin/georeg --config "$work/georeg.toml" check 2>&1)
code=$?
echo "$out" >>"$log"
if [ "$code" -eq 0 ] && grep -q "^georeg check: all .* checks ok" <<<"$out"; then
    ok "georeg check as user georeg: every check ok"
else
    bad "georeg check as user georeg: every check ok (exit $code: $out)"
fi
check "the state file belongs to georeg" test "$(stat -c %U /var/lib/georeg/state.sqlite3)" = georeg
check "georeg check as root passes too" /usr/bin/georeg --config "$work/georeg.toml" check
check "... and leaves the state file to georeg" test "$(stat -c %U /var/lib/georeg/state.sqlite3)" = georeg

"${as_georeg[@]}" /usr/bin/georeg --config "$work/georeg.toml" serve >>"$work/serve.log" 2>&1 &
serve=$!
pids+=("$serve")
check "georeg serve runs as user georeg and answers /-/health" wait_for "http://127.0.0.1:$listen_port/-/health"
kill -TERM "$serve"
for _ in $(seq 150); do kill -0 "$serve" 2>/dev/null || break; sleep 0.1; done
if ! kill -0 "$serve" 2>/dev/null; then
    wait "$serve"
    check "georeg serve stops cleanly on SIGTERM" test $? -eq 0
else
    bad "georeg serve stops cleanly on SIGTERM (still running after 15 s)"
fi
if [ -d /run/systemd/system ]; then
    # A machine running systemd: the unit itself, sandbox and all.
    cp "$work/georeg.toml" /etc/georeg/georeg.toml
    install -o georeg -g georeg -m 0600 "$work/gitlab-registry.key" /etc/georeg/gitlab-registry.key
    sed -i "s|^key_file = .*|key_file = \"/etc/georeg/gitlab-registry.key\"|" /etc/georeg/georeg.toml
    check "systemctl start georeg: the hardened service runs" systemctl start georeg
    check "... and answers /-/health" wait_for "http://127.0.0.1:$listen_port/-/health"
    pid_before=$(systemctl show -p MainPID --value georeg)
    check "an upgrade restarts the running service" env DEBIAN_FRONTEND=noninteractive dpkg --install "$deb"
    check "... onto the new binary (a new PID)" test "$(systemctl show -p MainPID --value georeg)" != "$pid_before"
    check "... which answers /-/health" wait_for "http://127.0.0.1:$listen_port/-/health"
    check "systemctl stop georeg" systemctl stop georeg
    rm -f /etc/georeg/gitlab-registry.key
else
    note "systemd is not running here: the unit's sandbox was not exercised (georeg serve ran as georeg without it)"
fi

# ---- remove keeps the configuration and the state; purge takes them
check "dpkg --remove removes it" dpkg --remove georeg
check "after remove, /usr/bin/georeg is gone" test ! -e /usr/bin/georeg
check "after remove, /etc/georeg/georeg.toml remains" test -f /etc/georeg/georeg.toml
check "after remove, /var/lib/georeg and its state file remain" test -f /var/lib/georeg/state.sqlite3
check "dpkg --purge purges it" dpkg --purge georeg
check "after purge, /etc/georeg/georeg.toml is gone" test ! -e /etc/georeg/georeg.toml
check "after purge, /var/lib/georeg is gone" test ! -e /var/lib/georeg
check "after purge, /usr/bin/georeg is gone" test ! -e /usr/bin/georeg
check "after purge, dpkg has no trace of georeg" test -z "$(dpkg-query -W georeg 2>/dev/null)"

finish
