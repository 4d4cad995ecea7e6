#!/bin/sh
# Installs the Debian/Ubuntu packages tune builds and tests with (as root, or
# through sudo); does nothing for packages already present. python3 (stdlib
# only) parses tune's JSON output in the tests; clang and libclang-rt-dev (its
# libFuzzer and sanitizer runtimes) build the fuzz targets of `make test`.
set -eu
packages="build-essential pkg-config python3 libcjson-dev libcmocka-dev libpcre2-dev libopenblas-dev libyaml-dev libutf8proc-dev clang libclang-rt-dev"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
as_root=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root to install:$missing" >&2; exit 1; }
    as_root="sudo"
fi
echo "install-deps: installing$missing"
$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
