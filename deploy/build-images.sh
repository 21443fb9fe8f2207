#!/usr/bin/env bash
# Builds the release binaries and the trecho image from them, with no
# registry access. The image contains the binaries, the shared libraries ldd
# reports for them, and the few files glibc reads at run time. Needs cargo,
# docker, ldd and strip (binutils).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
image=${TRECHO_IMAGE:-trecho:local}
binaries=(trecho trecho-router trecho-shard)

cd "$repo"
# Cargo puts binaries under CARGO_TARGET_DIR when it is set.
target=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release --locked --bins -p trecho-client -p trecho-router -p trecho-shard

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp" "$context/data"

for binary in "${binaries[@]}"; do
    # The release profile keeps line tables for backtraces; the image keeps
    # only the symbols, which is most of the size saved.
    strip --strip-debug -o "$rootfs/usr/local/bin/$binary" "$target/release/$binary"
    # Every library the dynamic loader maps, including the loader itself.
    ldd "$target/release/$binary" | grep -o '/[^ ]*' | while read -r library; do
        mkdir -p "$rootfs$(dirname "$library")"
        cp -L "$library" "$rootfs$library"
    done
done

# glibc resolves compose service names through /etc/hosts and DNS; Docker
# mounts /etc/hosts and /etc/resolv.conf, and nsswitch.conf names the order.
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
printf 'root:x:0:0::/:/nonexistent\ntrecho:x:10001:10001::/data:/nonexistent\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\ntrecho:x:10001:\n' > "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"

cp deploy/Dockerfile "$context/Dockerfile"
previous=$(docker image inspect "$image" --format '{{.Id}}' 2>/dev/null || true)
docker build --quiet -t "$image" "$context" >/dev/null
current=$(docker image inspect "$image" --format '{{.Id}}')
if [[ -n $previous && $previous != "$current" ]]; then
    # The tag moved to the new image; drop the old one unless a container
    # still uses it.
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
size=$(docker image inspect "$image" --format '{{.Size}}')
echo "built $image ($((size / 1024 / 1024)) MiB)"
