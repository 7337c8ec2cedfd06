#!/usr/bin/env bash
# Provision virglrenderer >= 1.3 for vhost-device-gpu's virgl mode on a
# Debian 12 host, in a private prefix: nothing is installed system-wide
# except the ordinary bookworm runtime libraries it links against.
#
# rutabaga_gfx 0.1.85's `virgl_renderer` feature asks pkg-config for
# virglrenderer >= 1.3.0. Debian 12 ships 0.10.4 and trixie 1.1.0; sid
# ships 1.3. Our network reaches Debian's binary packages but not its
# source packages, so we take sid's binary libvirglrenderer1 and make it
# load on bookworm (see README.md beside this file for why and how):
#   * its only newer-glibc needs are five C23 entry points
#     (__isoc23_sscanf, __isoc23_strto{l,ul,ll,ull}, GLIBC_2.38); a tiny
#     compat library built here provides them, and the library's
#     references are re-pointed at it (patchelf + one ELF flag);
#   * the same library steps around a Mesa 22.3 crash (see below);
#   * every other dependency (libepoxy, libgbm, libdrm, libva, Mesa's EGL
#     and llvmpipe) is bookworm's own, installed with apt.
# Any other symbol newer than the host's glibc makes this script fail
# loudly instead of producing a library that dies at load time.
#
# Idempotent and cached under ${VHOST_DEVICE_CACHE:-$HOME/.cache/vhost-device}/virgl.
# A re-run with an unchanged script returns at once and prints the
# environment to use (PKG_CONFIG_PATH for the build, LD_LIBRARY_PATH for
# the run), also kept in $CACHE/env.
#
# Usage: provision.sh [--force]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${VHOST_DEVICE_CACHE:-$HOME/.cache/vhost-device}/virgl"
PREFIX="$CACHE/prefix"
SUITE=sid
MIN_VERSION=1.3.0
# C23 entry points the compat library provides. Anything else that needs a newer
# glibc than the host's is an error.
SHIMMED=(__isoc23_sscanf __isoc23_strtol __isoc23_strtoul __isoc23_strtoll __isoc23_strtoull)
# bookworm packages: build/run tools, virglrenderer's runtime
# dependencies, and Mesa's EGL + llvmpipe for surfaceless rendering.
HOST_PKGS=(patchelf gcc pkg-config python3 libepoxy0 libdrm2 libgbm1 libva2 libva-drm2 libx11-6
           libegl1 libegl-mesa0 libgl1-mesa-dri)

log() { printf 'virgl-provision: %s\n' "$*" >&2; }
die() { printf 'virgl-provision: FAILED: %s\n' "$*" >&2; exit 1; }
trap 'die "command failed at line $LINENO (see messages above)"' ERR

STAMP="$(sha256sum "$HERE/provision.sh" | cut -d' ' -f1)"

if [[ "${1:-}" != "--force" && -f "$CACHE/stamp" && "$(cat "$CACHE/stamp")" == "$STAMP" \
      && -f "$CACHE/env" && -f "$PREFIX/lib/pkgconfig/virglrenderer.pc" ]]; then
    log "up to date: $CACHE (stamp ${STAMP:0:12})"
    cat "$CACHE/env"
    exit 0
fi

[[ "$(uname -m)" == x86_64 ]] || die "only x86_64 hosts are supported"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 || die "cannot lock $CACHE/.lock"

# ---------------------------------------------------------------- host packages
missing=()
for p in "${HOST_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    [[ "$(id -u)" == 0 ]] || die "missing packages (${missing[*]}); run as root to install them"
    log "installing host packages: ${missing[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi

# ---------------------------------------------------------------- sid packages
# A private apt state: the host's sources and dpkg database stay untouched.
MIRROR="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]*/debian/?( |$)' | head -n1 | tr -d ' ' || true)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
MIRROR="${MIRROR%/}"
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$CACHE/debs"
echo "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" \
    >"$APT/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o Dir::State::status=/dev/null
          -o APT::Architecture=amd64 -o APT::Sandbox::User=root -o Debug::NoLocking=1)
log "apt-get update ($SUITE, private state in $APT)"
apt-get "${apt_opts[@]}" update -qq || die "apt-get update of $SUITE failed"
version="$(apt-cache "${apt_opts[@]}" show libvirglrenderer1 | sed -n 's/^Version: //p' | head -n1)"
[[ -n "$version" ]] || die "no libvirglrenderer1 in $SUITE"
dpkg --compare-versions "$version" ge "$MIN_VERSION" \
    || die "$SUITE has libvirglrenderer1 $version, need >= $MIN_VERSION"
log "downloading libvirglrenderer1 and libvirglrenderer-dev $version"
rm -rf "$CACHE/debs" "$CACHE/x" "$PREFIX.tmp"
mkdir -p "$CACHE/debs" "$CACHE/x"
(cd "$CACHE/debs" && apt-get "${apt_opts[@]}" download -qq \
    "libvirglrenderer1=$version" "libvirglrenderer-dev=$version") || die "apt-get download failed"
for deb in "$CACHE"/debs/*.deb; do dpkg-deb -x "$deb" "$CACHE/x"; done

# ---------------------------------------------------------------- private prefix
mkdir -p "$PREFIX.tmp/lib/pkgconfig" "$PREFIX.tmp/include"
src="$CACHE/x/usr/lib/x86_64-linux-gnu"
real="$(basename "$(readlink -f "$src/libvirglrenderer.so.1")")"
cp "$src/$real" "$PREFIX.tmp/lib/$real"
ln -s "$real" "$PREFIX.tmp/lib/libvirglrenderer.so.1"
ln -s "$real" "$PREFIX.tmp/lib/libvirglrenderer.so"
cp -r "$CACHE/x/usr/include/virgl" "$PREFIX.tmp/include/"
sed -e "s|^prefix=.*|prefix=$PREFIX|" -e 's|^libdir=.*|libdir=${prefix}/lib|' \
    "$src/pkgconfig/virglrenderer.pc" >"$PREFIX.tmp/lib/pkgconfig/virglrenderer.pc"

# The compat library, a small one of our own that libvirglrenderer loads
# before its other dependencies:
#  * glibc 2.38's C23 entry points, which bookworm's glibc lacks. The C23
#    forms only add a 0b binary prefix; virglrenderer parses decimal and
#    hex numbers (environment variables, /proc), where the C99 forms give
#    the same result.
#  * epoxy_eglCreateImageKHR, interposed: bookworm's Mesa 22.3 on EGL
#    surfaceless with swrast/llvmpipe advertises EGL_KHR_gl_texture_2D_image
#    but jumps to a NULL driver hook when asked for one, and rutabaga asks
#    for one on every RESOURCE_CREATE_3D (to export the texture as a
#    dma-buf). We refuse that one target, so the export fails cleanly and
#    rutabaga goes on without a handle; our daemon has no dma-buf scanouts
#    anyway. Every other image target goes to libepoxy as before.
cat >"$CACHE/compat.c" <<'EOF'
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
// Generated by rust-vmm-ci/virgl/provision.sh: what sid's virglrenderer
// needs to run on Debian 12 (see the comments there).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

int __isoc23_sscanf(const char *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsscanf(s, fmt, ap);
    va_end(ap);
    return n;
}
long __isoc23_strtol(const char *s, char **end, int base) { return strtol(s, end, base); }
unsigned long __isoc23_strtoul(const char *s, char **end, int base) { return strtoul(s, end, base); }
long long __isoc23_strtoll(const char *s, char **end, int base) { return strtoll(s, end, base); }
unsigned long long __isoc23_strtoull(const char *s, char **end, int base) { return strtoull(s, end, base); }

#define EGL_GL_TEXTURE_2D_KHR 0x30B1
typedef void *(*create_image_fn)(void *dpy, void *ctx, unsigned target, void *buffer,
                                 const int *attrs);
static void *create_image(void *dpy, void *ctx, unsigned target, void *buffer, const int *attrs)
{
    if (target == EGL_GL_TEXTURE_2D_KHR)
        return NULL; /* EGL_NO_IMAGE_KHR */
    create_image_fn *next = dlsym(RTLD_NEXT, "epoxy_eglCreateImageKHR");
    return next && *next ? (*next)(dpy, ctx, target, buffer, attrs) : NULL;
}
create_image_fn epoxy_eglCreateImageKHR = create_image;
EOF
gcc -shared -fPIC -O2 -Wall -Werror -Wl,-soname,libvirgl-compat.so \
    -o "$PREFIX.tmp/lib/libvirgl-compat.so" "$CACHE/compat.c" -ldl

# Which glibc versions does the host have, and which does the library need?
host_glibc="$(getconf GNU_LIBC_VERSION | awk '{print $2}')"
lib="$PREFIX.tmp/lib/$real"
while read -r ver sym; do
    [[ " ${SHIMMED[*]} " == *" $sym "* ]] \
        || die "$real needs $sym@GLIBC_$ver, newer than the host's glibc $host_glibc"
done < <(objdump -T "$lib" | sed -n 's/.*(GLIBC_\([0-9.]*\))[[:space:]]*\([^[:space:]]*\)$/\1 \2/p' \
         | while read -r ver sym; do
               dpkg --compare-versions "$ver" gt "$host_glibc" && echo "$ver $sym"
           done)

for sym in "${SHIMMED[@]}"; do
    patchelf --clear-symbol-version "$sym" "$lib"
done
# Two calls: patchelf 0.14 mixes up the strings when given both at once.
patchelf --add-needed libvirgl-compat.so "$lib"
patchelf --set-rpath '$ORIGIN' "$lib"

# patchelf leaves the library's "needs GLIBC_x from libc.so.6" records in
# place; unlink those newer than the host's glibc from the chain (no
# symbol refers to them any more), or the loader refuses the library.
python3 - "$lib" "$host_glibc" <<'EOF'
import struct, sys

path, host = sys.argv[1], tuple(int(x) for x in sys.argv[2].split("."))
data = bytearray(open(path, "rb").read())
assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "need a 64-bit LE ELF"
shoff, = struct.unpack_from("<Q", data, 0x28)
shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
SHT_GNU_VERNEED = 0x6FFFFFFE
dropped = []
for _name, typ, _flags, _addr, off, _size, link, info, _align, _entsize in sections:
    if typ != SHT_GNU_VERNEED:
        continue
    stroff = sections[link][4]

    def too_new(o):
        n = bytes(data[stroff + o:data.index(0, stroff + o)]).decode()
        return n.startswith("GLIBC_") and tuple(int(x) for x in n[6:].split(".")) > host, n

    vn = off
    for _ in range(info):
        ver, cnt, file_, aux, nxt = struct.unpack_from("<HHIII", data, vn)
        kept, va = [], vn + aux
        for _ in range(cnt):
            name, vnext = struct.unpack_from("<II", data, va + 8)
            new, n = too_new(name)
            if new:
                dropped.append(n)
            else:
                kept.append(va)
            va += vnext
        assert kept, "every version of one library dropped"
        struct.pack_into("<HHI", data, vn, ver, len(kept), file_)
        struct.pack_into("<I", data, vn + 8, kept[0] - vn)
        for a, b in zip(kept, kept[1:] + [None]):
            struct.pack_into("<I", data, a + 12, 0 if b is None else b - a)
        vn += nxt
open(path, "wb").write(data)
print("virgl-provision: dropped version needs:", " ".join(dropped) or "(none)", file=sys.stderr)
EOF

# Prove it loads on this host before calling it done.
cat >"$CACHE/loadcheck.c" <<'EOF'
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h || !dlsym(h, "virgl_renderer_init")) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    return argc - 2;
}
EOF
gcc -O2 -o "$CACHE/loadcheck" "$CACHE/loadcheck.c" -ldl
"$CACHE/loadcheck" "$lib" || die "the patched $real does not load on this host"

rm -rf "$PREFIX"
mv "$PREFIX.tmp" "$PREFIX"
rm -rf "$CACHE/x"
cat >"$CACHE/env" <<EOF
# Generated by rust-vmm-ci/virgl/provision.sh: virglrenderer $version (Debian $SUITE)
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$PREFIX/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
EOF
echo "$STAMP" >"$CACHE/stamp"
log "done: virglrenderer $version in $PREFIX"
cat "$CACHE/env"
