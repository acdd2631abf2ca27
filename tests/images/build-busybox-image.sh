#!/usr/bin/env bash
# Build the local test image ferry-test/busybox:1 from Debian's busybox-static: no registry needed.
# Usage: tests/images/build-busybox-image.sh [ENGINE]   (ENGINE: docker (default) or podman)
set -euo pipefail
engine=${1:-docker}
image=${FERRY_TEST_IMAGE:-ferry-test/busybox:1}
busybox=/bin/busybox   # from Debian's busybox-static: a static binary runs in an empty rootfs
[ -x "$busybox" ] || { echo "busybox-static is not installed (apt-get install busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/bin "$root"/sbin "$root"/usr/bin "$root"/tmp "$root"/workspace "$root"/etc "$root"/root
chmod 1777 "$root"/tmp
cp "$busybox" "$root"/bin/busybox
for applet in $("$busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
ln -s /bin/env "$root"/usr/bin/env
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' > "$root"/etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root"/etc/group
tar -C "$root" -c . | "$engine" import -c 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "built $image with $engine"
