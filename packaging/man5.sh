#!/usr/bin/env bash
# georeg.toml(5) in roff, from docs/configuration.md's table of keys: one
# source for the web page and the manual page.
#
#   packaging/man5.sh VERSION <docs/configuration.md >georeg.toml.5
set -euo pipefail
version=${1:?usage: man5.sh VERSION <docs/configuration.md}
cat <<HEAD
.TH GEOREG.TOML 5 "" "georeg $version" "File Formats"
.SH NAME
georeg.toml \- configuration of georeg
.SH DESCRIPTION
georeg reads TOML from \-\-config FILE, else \$GEOREG_CONFIG, else
/etc/georeg/georeg.toml. Relative paths are relative to the file's directory.
An unknown key, a wrong type or a bad value stops georeg with one line naming
the file, the key and what is wrong, and exit code 2. The full guide is
/usr/share/doc/georeg/docs/configuration.md.
.SH KEYS
HEAD
# Rows of the table: | `key` | default | meaning |
awk -F' \\| ' '
    /^\| `/ {
        key = $1; sub(/^\| `/, "", key); sub(/`$/, "", key)
        def = $2; mean = $3; sub(/ \|$/, "", mean)
        gsub(/`/, "", def); gsub(/`/, "", mean)
        gsub(/\\/, "\\\\", key); gsub(/\\/, "\\\\", def); gsub(/\\/, "\\\\", mean)
        gsub(/-/, "\\-", key)
        printf ".TP\n.B %s\n(default: %s) %s\n", key, def, mean
    }'
cat <<'TAIL'
.SH SEE ALSO
georeg(1)
TAIL
