#!/usr/bin/env bash
# Build the local test image ferry-test/debian-glibc:1, a minimal Debian 12 userland made from
# this machine's own Debian packages (no registry): busybox-static for the shell and tools, and
# the C library of Debian's libc6 and libgcc-s1 (glibc 2.36), which the gnu build of the Codemod
# CLI needs (glibc >= 2.35). Codemod steps of tasks in this image run the CLI mounted read-only.
# Usage: tests/images/build-debian-image.sh [ENGINE]   (ENGINE: docker (default) or podman)
set -euo pipefail
engine=${1:-docker}
image=${FERRY_DEBIAN_IMAGE:-ferry-test/debian-glibc:1}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "busybox-static is not installed (apt-get install busybox-static)" >&2; exit 1; }
command -v dpkg >/dev/null || { echo "dpkg not found: build this image on Debian" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/bin "$root"/sbin "$root"/usr/bin "$root"/tmp "$root"/workspace "$root"/etc "$root"/root
chmod 1777 "$root"/tmp
# Debian 12's merged /usr: /bin, /sbin, /lib and /lib64 are links into /usr
mkdir -p "$root"/usr/bin "$root"/usr/sbin "$root"/usr/lib "$root"/usr/lib64
rmdir "$root"/bin "$root"/sbin
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
# the shared libraries of libc6 and libgcc-s1 as Debian installed them (their real paths)
for pkg in libc6 libgcc-s1; do
  dpkg -L "$pkg" | while read -r f; do
    case "$f" in
      *.so|*.so.*) ;;
      *) continue ;;
    esac
    [ -f "$f" ] || [ -L "$f" ] || continue
    dest="$root$(readlink -f "$(dirname "$f")")"
    mkdir -p "$dest"
    cp -a "$f" "$dest/"
  done
done
bindir="$root"/usr/bin
cp "$busybox" "$bindir"/busybox
for applet in $("$busybox" --list); do
  [ -e "$bindir/$applet" ] || ln -s busybox "$bindir/$applet"
done
[ -e "$root"/usr/bin/env ] || ln -s /bin/env "$root"/usr/bin/env
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' > "$root"/etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root"/etc/group
tar -C "$root" -c . | "$engine" import -c 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "built $image with $engine"
