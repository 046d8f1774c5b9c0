#!/usr/bin/env bash
# Makes a Debian 12 (bookworm) base image locally with mmdebstrap, for a machine that reaches the
# Debian mirror but no container registry (scripts/image.sh calls it when `FROM debian:...`
# cannot be pulled). `slim` drops documentation, manual pages and locales the way Docker's
# debian:bookworm-slim does. The image gets the three bookworm sources (main, updates,
# security), so the Dockerfile's apt-get steps install the same package versions as the host.
#
#   scripts/image_base.sh ENGINE IMAGE [slim]     # e.g. podman localhost/debian:bookworm-slim slim
#
# DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR override the mirrors.
set -euo pipefail
engine="$1" image="$2" flavour="${3:-}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
command -v mmdebstrap >/dev/null || { echo "image_base.sh: mmdebstrap missing (scripts/bootstrap.sh installs it)" >&2; exit 1; }

dpkgopts=()
if [ "$flavour" = slim ]; then
  for dir in doc man info groff lintian linda locale; do
    dpkgopts+=(--dpkgopt="path-exclude=/usr/share/$dir/*")
  done
  dpkgopts+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "[image] making $image with mmdebstrap (minbase${flavour:+, $flavour}) from $mirror" >&2
# Bootstrapped from bookworm alone (mmdebstrap selects the required packages by suite), then
# given all three sources and upgraded, as Debian's own images are.
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
  "$mirror" "$mirror" "$security" > "$tmp/sources.list"
mmdebstrap --quiet --variant=minbase "${dpkgopts[@]}" \
  --customize-hook="copy-in $tmp/sources.list /etc/apt" \
  --customize-hook='chroot "$1" apt-get -qq update && chroot "$1" apt-get -qq -y upgrade >/dev/null && chroot "$1" apt-get clean' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$tmp/rootfs.tar" "deb $mirror bookworm main"
"$engine" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' "$tmp/rootfs.tar" "$image" >/dev/null
