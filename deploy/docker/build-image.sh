#!/usr/bin/env bash
# Builds the AllocDB image without any image registry: a statically linked `allocdb` in a
# FROM scratch image.
#
#   deploy/docker/build-image.sh [tag]        (default tag: allocdb:dev, or $ALLOCDB_IMAGE)
#
# Environment: CARGO_TARGET_DIR (default: <repo>/target), CARGO_PROFILE (default: release).
# Prints the image tag and size on its last line.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/../.." && pwd)"
tag="${1:-${ALLOCDB_IMAGE:-allocdb:dev}}"
target_dir="${CARGO_TARGET_DIR:-$repo_dir/target}"
profile="${CARGO_PROFILE:-release}"
triple="x86_64-unknown-linux-gnu"

# glibc, statically linked. An explicit --target keeps RUSTFLAGS away from build scripts and
# proc macros (they run on the host and stay dynamic), and gives the static artefacts their own
# directory, so they never mix with the workspace's ordinary dynamic build.
echo "== cargo build (static, $triple, profile $profile)"
(cd "$repo_dir" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$target_dir" \
    cargo build --locked --profile "$profile" --target "$triple" -p allocdb-server --bin allocdb)
binary="$target_dir/$triple/$profile/allocdb"
[[ -x "$binary" ]] || { echo "build-image.sh: $binary was not built" >&2; exit 1; }

# A dynamic binary would start in scratch only to fail with "no such file or directory" (no
# loader): refuse it here instead.
description="$(file -b "$binary")"
if ! grep -Eq 'static(-pie)? linked|statically linked' <<<"$description"; then
    echo "build-image.sh: $binary is not statically linked: $description" >&2
    exit 1
fi
if ldd "$binary" >/dev/null 2>&1 && ! ldd "$binary" 2>&1 | grep -Eq 'statically linked|not a dynamic executable'; then
    echo "build-image.sh: ldd lists shared libraries for $binary:" >&2
    ldd "$binary" >&2
    exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir "$context/data"
mkdir -m 0700 "$context/certs" # the CA key and every private key of a Compose cluster live here
cp "$script_dir/Dockerfile" "$context/Dockerfile"
# Debug info stays in the cargo artefact for post-mortems; the image gets symbols only
# (panic backtraces still name functions).
objcopy --strip-debug "$binary" "$context/allocdb"
"$context/allocdb" --help >/dev/null || { echo "build-image.sh: the stripped binary does not run" >&2; exit 1; }

echo "== docker build -t $tag"
docker build --quiet --tag "$tag" "$context" >/dev/null
# The previous build under this tag is now dangling: remove it (only images of this Dockerfile).
docker image prune --force --filter "label=org.opencontainers.image.title=allocdb" >/dev/null
size_bytes="$(docker image inspect --format '{{.Size}}' "$tag")"
echo "built $tag: $((size_bytes / 1024)) KiB ($(file -b "$context/allocdb" | cut -d, -f1-2,4))"
