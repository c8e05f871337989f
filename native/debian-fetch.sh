#!/usr/bin/env bash
# debian-fetch.sh SUITE ARCH DEST PACKAGE...: download Debian packages of another suite or architecture with apt,
# from this machine's own Debian mirror (its sources, with the suite and architecture changed), and unpack them
# into DEST (dpkg-deb -x: nothing is installed). A stamp in DEST/.apt records what was unpacked, so
# a second run with the same packages downloads nothing. Used for the onnxruntime C API header (libonnxruntime-dev, in
# Debian's newer suites), for a newer qemu, and for the ARM64 root that qemu runs programs in.
set -euo pipefail
suite=$1 arch=$2 dest=$3
shift 3
mkdir -p "$dest/.apt/lists/partial" "$dest/.apt/debs"
dest=$(cd "$dest" && pwd)
stamp="$dest/.apt/$(echo "$suite $arch $*" | sha256sum | cut -c1-16).done"
[ -f "$stamp" ] && exit 0
mirror=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p';
          cat /etc/apt/sources.list 2>/dev/null | sed -n 's/^deb \(\[[^]]*\] \)\?\([^ ]*\/debian\) .*/\2/p') | head -1 || true)
[ -n "$mirror" ] || { echo "debian-fetch: no Debian mirror in /etc/apt/sources.list*" >&2; exit 2; }
echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" \
  > "$dest/.apt/sources.list"
apt_opts=(-q -o Dir::Etc::SourceList="$dest/.apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists="$dest/.apt/lists" -o Dir::Cache::archives="$dest/.apt/debs"
          -o APT::Architecture="$arch" -o APT::Architectures::="$arch" -o Debug::NoLocking=1)
apt-get "${apt_opts[@]}" update >/dev/null
(cd "$dest/.apt/debs" && apt-get "${apt_opts[@]}" download "$@" 2>&1 | grep -v "unsandboxed" || true)
for pkg in "$@"; do
  deb=$(ls "$dest/.apt/debs/${pkg%%:*}"_*.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || { echo "debian-fetch: $pkg was not downloaded ($suite, $arch)" >&2; exit 2; }
  dpkg-deb -x "$deb" "$dest"
done
rm -rf "$dest/.apt/debs"/*.deb "$dest/.apt/lists"  # unpacked: what is kept is DEST itself
touch "$stamp"
