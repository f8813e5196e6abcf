#!/usr/bin/env bash
# Builds georeg_VERSION_ARCH.deb from `cargo build --release --locked`, with
# dpkg-deb alone (no debhelper, no cargo-deb: nothing extra to install).
# $CARGO names another cargo: the package test builds with Debian's own
# toolchain (CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc).
#
#   packaging/build-deb.sh [OUTDIR]      (default: target/debian)
#
# $GEOREG_DEB_MAINTAINER names who maintains the package at a site that
# builds its own (Debian's "Name <address>").
# VERSION is Cargo.toml's (or $GEOREG_DEB_VERSION, which the package test
# uses to build an older version to upgrade from), ARCH is
# `dpkg --print-architecture`. Prints the path of the package on its last
# line.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${GEOREG_DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)}
arch=$(dpkg --print-architecture)
out=$(mkdir -p "${1:-target/debian}" && cd "${1:-target/debian}" && pwd)
if ! head -n 1 packaging/changelog | grep -q "^georeg ($version)"; then
    echo "build-deb: warning: packaging/changelog has no entry for $version yet" >&2
fi

"${CARGO:-cargo}" build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/georeg"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# mktemp's 0700 would become the mode of the package's `./`.
chmod 0755 "$root"
install -D -m 0755 "$bin" "$root/usr/bin/georeg"
strip --strip-unneeded "$root/usr/bin/georeg"
install -D -m 0644 packaging/georeg.toml "$root/etc/georeg/georeg.toml"
install -D -m 0644 packaging/georeg.service "$root/usr/lib/systemd/system/georeg.service"
install -D -m 0644 packaging/copyright "$root/usr/share/doc/georeg/copyright"
install -D -m 0644 README.md "$root/usr/share/doc/georeg/README.md"
install -d -m 0755 "$root/usr/share/doc/georeg/docs"
install -m 0644 docs/*.md "$root/usr/share/doc/georeg/docs/"
install -D -m 0644 schema.sql "$root/usr/share/doc/georeg/schema.sql"
gzip -9n <packaging/changelog >"$root/usr/share/doc/georeg/changelog.gz"
# georeg(1), from the same help texts as `georeg help COMMAND`.
install -d -m 0755 "$root/usr/share/man/man1"
"$bin" help --man | gzip -9n >"$root/usr/share/man/man1/georeg.1.gz"
chmod 0644 "$root/usr/share/man/man1/georeg.1.gz"
# georeg.toml(5), from the configuration reference.
install -d -m 0755 "$root/usr/share/man/man5"
packaging/man5.sh "$version" <docs/configuration.md | gzip -9n >"$root/usr/share/man/man5/georeg.toml.5.gz"
chmod 0644 "$root/usr/share/man/man5/georeg.toml.5.gz"
install -D -m 0644 packaging/georeg-primary.toml "$root/usr/share/doc/georeg/examples/georeg-primary.toml"
chmod 0644 "$root/usr/share/doc/georeg/changelog.gz"

install -d -m 0755 "$root/DEBIAN"
install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$root/DEBIAN/"
echo /etc/georeg/georeg.toml >"$root/DEBIAN/conffiles"
# What `debsums georeg` and `dpkg --verify georeg` check the files against.
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

# Shared libraries: libc (and libgcc_s, which Rust's standard library links
# for unwinding). SQLite is compiled in, TLS is rustls: no OpenSSL.
glibc=$(objdump -T "$root/usr/bin/georeg" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
depends="libc6 (>= ${glibc:-2.17}), adduser"
# Read whole first: `grep -q` quitting early would SIGPIPE objdump, which
# pipefail turns into "not found".
dynamic=$(objdump -p "$root/usr/bin/georeg")
if grep -q 'NEEDED *libgcc_s' <<<"$dynamic"; then
    depends="$depends, libgcc-s1"
fi
cat >"$root/DEBIAN/control" <<CONTROL
Package: georeg
Version: $version
Architecture: $arch
Maintainer: ${GEOREG_DEB_MAINTAINER:-georeg maintainers <maintainers@georeg.invalid>}
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Section: net
Priority: optional
Description: keeps a secondary container registry in step with a primary one
 georeg replicates every image pushed to a primary container registry into
 the registry of each secondary, byte for byte and with the same digests,
 through the registry HTTP API only, as GitLab Geo's registry replication
 does. It runs as a systemd service (installed, not enabled: configure
 /etc/georeg/georeg.toml and run \`georeg check\` first) and contacts nothing
 but the registries and georeg nodes in its configuration.
CONTROL

deb="$out/georeg_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
