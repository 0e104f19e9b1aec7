#!/usr/bin/env bash
# Build a FROM scratch container image holding a static betwixt.
#
#   image/build.sh [-n]      -n: only print what would be done
#
# Environment: TARGET (default x86_64-unknown-linux-musl, or the static-glibc
# variant below when that target is not installed), TAG (default
# betwixt:<version>), CONFIG (default: the Buildroot package's betwixt.toml).
#
# Static glibc: without the musl target, an x86_64 host builds
# x86_64-unknown-linux-gnu with RUSTFLAGS="-C target-feature=+crt-static"
# (also chosen with TARGET=x86_64-unknown-linux-gnu). Such a binary cannot
# use NSS in the image: host names given to getaddrinfo (URLs, addresses in
# the config) do not resolve; IP literals and DNS discovery work.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
installed() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }
if [ -n "${TARGET:-}" ]; then
	target=$TARGET
elif installed x86_64-unknown-linux-musl || [ "$(uname -m)" != x86_64 ]; then
	target=x86_64-unknown-linux-musl
else
	target=x86_64-unknown-linux-gnu
	echo "note: x86_64-unknown-linux-musl is not installed; building a static glibc binary instead" >&2
fi
# glibc targets link statically only when asked.
case "$target" in
	*-linux-gnu*) export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)
tag=${TAG:-betwixt:$version}
config=${CONFIG:-$repo/buildroot/package/betwixt/betwixt.toml}
bin=${CARGO_TARGET_DIR:-$repo/target}/$target/release/betwixt
rootfs=$here/rootfs

dry=0
case "${1:-}" in
	-n | --dry-run) dry=1 ;;
	"") ;;
	*) echo "usage: $0 [-n|--dry-run]" >&2; exit 2 ;;
esac

case "$target" in
	x86_64-*) platform=linux/amd64 ;;
	aarch64-*) platform=linux/arm64 ;;
	armv7-*) platform=linux/arm/v7 ;;
	*) platform="" ;;
esac

run() {
	echo "+ $*"
	if [ "$dry" -eq 0 ]; then
		"$@"
	fi
}

if [ "$dry" -eq 0 ] && ! installed "$target"; then
	echo "Rust target $target is not installed. Add it with:" >&2
	echo "    rustup target add $target" >&2
	exit 1
fi
[ -z "${RUSTFLAGS:-}" ] || echo "+ RUSTFLAGS=\"$RUSTFLAGS\""
run cargo build --release --locked --target "$target" --manifest-path "$repo/Cargo.toml"

if [ "$dry" -eq 0 ] && command -v file > /dev/null; then
	case "$(file -b "$bin")" in
		*"statically linked"* | *"static-pie linked"*) ;;
		*) echo "warning: $bin is not statically linked; it will not run FROM scratch" >&2 ;;
	esac
fi

run rm -rf "$rootfs"
run install -D -m 0755 "$bin" "$rootfs/betwixt"
run install -D -m 0644 "$config" "$rootfs/etc/betwixt/betwixt.toml"

build=(docker build ${platform:+--platform "$platform"} -t "$tag" "$here")
if [ "$dry" -eq 0 ] && command -v docker > /dev/null && docker info > /dev/null 2>&1; then
	run "${build[@]}"
	echo "built $tag; check its config with: docker run --rm $tag -t"
else
	[ "$dry" -eq 1 ] || echo "docker is not available; the image would be built with:"
	echo "+ ${build[*]}"
fi
