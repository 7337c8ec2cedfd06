#!/usr/bin/env bash
# Provision the guest test rig: QEMU, a guest kernel with every module the
# vhost-device devices need, and an initramfs with the guest tools.
#
# Idempotent and cached under ${VHOST_DEVICE_CACHE:-$HOME/.cache/vhost-device}/guest.
# A re-run with unchanged scripts returns in about a second; a first run takes a
# few minutes. See README.md beside this file.
#
# Usage: provision.sh [--force]     (--force rebuilds the kernel/initramfs stage)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${VHOST_DEVICE_CACHE:-$HOME/.cache/vhost-device}/guest"
ROOT="$CACHE/root"
SUITE=trixie
BACKPORTS=trixie-backports
# The kernel series we test against. The exact version is resolved from the
# trixie-backports linux-headers-amd64 metapackage.
KSERIES=7.3

log() { printf 'provision: %s\n' "$*" >&2; }
die() { printf 'provision: FAILED: %s\n' "$*" >&2; exit 1; }
trap 'die "command failed at line $LINENO (see messages above)"' ERR

# Every file that shapes the result feeds the stamp: change one, rebuild.
stamp_inputs() {
    cat "$HERE/provision.sh" "$HERE/init" "$HERE/modules.list" "$HERE"/bin/* "$HERE/kmod/Kbuild."* \
        "$HERE"/tools/*.c "$HERE"/gl/*
}
STAMP="$(stamp_inputs | sha256sum | cut -d' ' -f1)"

if [[ "${1:-}" != "--force" && -f "$CACHE/stamp" && "$(cat "$CACHE/stamp")" == "$STAMP" \
      && -f "$CACHE/env" && -x "$CACHE/qemu" ]]; then
    log "up to date: $CACHE (stamp ${STAMP:0:12})"
    cat "$CACHE/env"
    exit 0
fi

[[ "$(id -u)" == 0 ]] || die "must run as root (debootstrap, chroot)"
[[ "$(uname -m)" == x86_64 ]] || die "only x86_64 hosts are supported"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 || die "cannot lock $CACHE/.lock"

# ---------------------------------------------------------------- host tools
need_host=()
for t in debootstrap:debootstrap cpio:cpio unshare:util-linux xz:xz-utils gzip:gzip depmod:kmod zstd:zstd; do
    command -v "${t%%:*}" >/dev/null || need_host+=("${t#*:}")
done
if ((${#need_host[@]})); then
    log "installing host packages: ${need_host[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_host[@]}" >/dev/null \
        || die "apt-get install ${need_host[*]} failed"
fi

# The mirror this machine already uses, so provisioning reaches the same place.
MIRROR="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]*/debian/?( |$)' | head -n1 | tr -d ' ' || true)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
MIRROR="${MIRROR%/}"

# Run a command inside the root with /proc, /sys and /dev mounted in a private
# mount namespace, so nothing stays mounted on the host when it ends.
in_root() {
    unshare --mount --propagation private -- sh -c '
        set -e
        r="$1"; shift
        mount -t proc proc "$r/proc"
        mount --rbind /sys "$r/sys"
        mount --rbind /dev "$r/dev"
        exec chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
            DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"' sh "$ROOT" "$@"
}

# ------------------------------------------------------------ trixie root
if [[ ! -f "$ROOT/.debootstrap-done" ]]; then
    log "debootstrap $SUITE (minbase) from $MIRROR into $ROOT"
    rm -rf "$ROOT.tmp"
    debootstrap --variant=minbase "$SUITE" "$ROOT.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || die "debootstrap failed, see $CACHE/debootstrap.log"
    rm -rf "$ROOT"
    mv "$ROOT.tmp" "$ROOT"
    touch "$ROOT/.debootstrap-done"
fi

echo "deb $MIRROR $BACKPORTS main" >"$ROOT/etc/apt/sources.list.d/backports.list"
# No service may start inside the root.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"

# Host-side tools: QEMU and firmware, and what building modules needs.
# Guest-side tools: unpacked into the initramfs from the same root.
GUEST_PKGS=(busybox-static dash i2c-tools gpiod alsa-utils can-utils bluez libdrm-tests iproute2 kmod)
HOST_PKGS=(qemu-system-x86 ipxe-qemu seabios gcc make libc6-dev xz-utils)
# BlueZ's emulated controller (btvirt) for the bluetooth H:4 scenario, run on
# the host through the root's loader like QEMU.
HOST_PKGS+=(bluez-test-tools)

log "apt-get update in the root"
in_root apt-get update -qq >"$CACHE/apt.log" 2>&1 || die "apt-get update in root failed, see $CACHE/apt.log"

KVER_HDR="$(in_root apt-cache depends -t "$BACKPORTS" linux-headers-amd64 2>/dev/null \
            | sed -n 's/.*Depends: linux-headers-\([0-9][^ ]*-amd64\)$/\1/p' | head -n1)"
[[ -n "$KVER_HDR" ]] || die "cannot resolve the linux-headers-amd64 version in $BACKPORTS"
KVER="$KVER_HDR"                      # e.g. 7.3.4+deb13-amd64
[[ "$KVER" == "$KSERIES".* ]] || log "warning: $BACKPORTS kernel is $KVER, not $KSERIES.x"
KSRC_SERIES="$(echo "$KVER" | cut -d. -f1-2)"

log "installing in the root: QEMU from $BACKPORTS, build tools, linux-headers-$KVER, guest tools"
in_root apt-get install -y -qq --no-install-recommends -t "$BACKPORTS" \
    "${HOST_PKGS[@]}" "${GUEST_PKGS[@]}" "linux-headers-$KVER" "linux-source-$KSRC_SERIES" \
    >>"$CACHE/apt.log" 2>&1 || die "apt-get install in root failed, see $CACHE/apt.log"
in_root apt-get clean >/dev/null 2>&1 || true    # the .deb files are not needed again

QEMU_VERSION="$("$ROOT/lib64/ld-linux-x86-64.so.2" --library-path "$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu" \
                "$ROOT/usr/bin/qemu-system-x86_64" --version | head -n1)" \
    || die "QEMU from the root does not run on this host"
log "$QEMU_VERSION"

# ------------------------------------------------------------ QEMU wrapper
cat >"$CACHE/qemu" <<EOF
#!/bin/sh
# Generated by rust-vmm-ci/guest/provision.sh: runs the trixie-backports QEMU on
# this host through the root's own loader and libraries.
R="$ROOT"
export QEMU_MODULE_DIR="\$R/usr/lib/x86_64-linux-gnu/qemu"
exec "\$R/lib64/ld-linux-x86-64.so.2" --library-path "\$R/usr/lib/x86_64-linux-gnu:\$R/lib/x86_64-linux-gnu" \\
    "\$R/usr/bin/qemu-system-x86_64" -L "\$R/usr/share/qemu" -L "\$R/usr/share/seabios" -L "\$R/usr/lib/ipxe/qemu" "\$@"
EOF
chmod +x "$CACHE/qemu"

# ------------------------------------------------------------ kernel
KDIR="$CACHE/kernel"
if [[ ! -f "$KDIR/$KVER.done" ]]; then
    log "fetching the kernel image and modules for $KVER"
    rm -rf "$KDIR" "$ROOT/tmp/kdl"
    mkdir -p "$KDIR" "$ROOT/tmp/kdl"
    # Since 7.x Debian splits the image package; fetch whatever it depends on
    # that carries the vmlinuz and the modules.
    pkgs=("linux-image-$KVER")
    for dep in $(in_root apt-cache depends "linux-image-$KVER" | sed -n 's/.*Depends: \(linux-[a-z]*-'"$KVER"'\)$/\1/p'); do
        pkgs+=("$dep")
    done
    pkgs+=("linux-modules-$KVER")
    in_root sh -c "cd /tmp/kdl && for p in ${pkgs[*]}; do apt-get download -t $BACKPORTS \$p >/dev/null 2>&1 || true; done"
    ls "$ROOT"/tmp/kdl/*.deb >/dev/null 2>&1 || die "could not download the kernel packages (${pkgs[*]})"
    for deb in "$ROOT"/tmp/kdl/*.deb; do dpkg -x "$deb" "$KDIR/x"; done
    rm -rf "$ROOT/tmp/kdl"
    vmlinuz="$(find "$KDIR/x" -name 'vmlinuz*' -type f | head -n1)"
    [[ -n "$vmlinuz" ]] || die "no vmlinuz in the kernel packages"
    mv "$vmlinuz" "$KDIR/vmlinuz"
    mdir="$(find "$KDIR/x" -type d -path "*/lib/modules/$KVER" | head -n1)"
    [[ -n "$mdir" ]] || die "no modules for $KVER in the kernel packages"
    mkdir -p "$KDIR/lib/modules"
    mv "$mdir" "$KDIR/lib/modules/$KVER"
    rm -rf "$KDIR/x"
    touch "$KDIR/$KVER.done"
fi

# An uncompressed ELF vmlinux boots through PVH and skips the in-guest
# decompression, about a second of TCG time per boot. vmlinuz stays as the
# fallback.
if [[ ! -s "$KDIR/vmlinux" ]]; then
    off="$(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$KDIR/vmlinuz" | head -n1 | cut -d: -f1 || true)"
    if [[ -n "$off" ]]; then
        tail -c +$((off + 1)) "$KDIR/vmlinuz" | zstd -dcq >"$KDIR/vmlinux.tmp" 2>/dev/null || true
        if [[ "$(head -c 4 "$KDIR/vmlinux.tmp" | od -An -tx1 | tr -d ' ')" == 7f454c46 ]]; then
            mv "$KDIR/vmlinux.tmp" "$KDIR/vmlinux"
        fi
    fi
    rm -f "$KDIR/vmlinux.tmp"
fi
BOOT_KERNEL="$KDIR/vmlinuz"
[[ -s "$KDIR/vmlinux" ]] && BOOT_KERNEL="$KDIR/vmlinux"

# ------------------------------------------------------------ out-of-tree modules
# Debian's config leaves these virtio drivers off; build them from
# linux-source against the matching headers, inside the root (its gcc and
# glibc match what the kernel was built with).
EXTRA="$KDIR/extra"
build_kmods() {
    local src="/usr/src/linux-source-$KSRC_SERIES"
    rm -rf "$ROOT/tmp/kmod" "$EXTRA"
    mkdir -p "$ROOT/tmp/kmod" "$EXTRA"
    if [[ ! -d "$ROOT$src/drivers/rpmsg" ]]; then
        log "extracting driver sources from linux-source-$KSRC_SERIES"
        (cd "$ROOT/usr/src" && tar -xJf "linux-source-$KSRC_SERIES.tar.xz" --wildcards \
            "linux-source-$KSRC_SERIES/drivers/rpmsg/*" \
            "linux-source-$KSRC_SERIES/drivers/tty/rpmsg_tty.c" \
            "linux-source-$KSRC_SERIES/drivers/gpio/gpio-virtio.c" \
            "linux-source-$KSRC_SERIES/drivers/i2c/busses/i2c-virtio.c" \
            "linux-source-$KSRC_SERIES/drivers/bluetooth/virtio_bt.c" \
            "linux-source-$KSRC_SERIES/drivers/bluetooth/*.h" \
            "linux-source-$KSRC_SERIES/drivers/net/can/virtio_can.c") \
            || die "cannot extract driver sources from linux-source-$KSRC_SERIES"
    fi
    local status="$EXTRA/status.txt"
    : >"$status"
    local group
    for kb in "$HERE"/kmod/Kbuild.*; do
        group="${kb##*.}"
        local d="$ROOT/tmp/kmod/$group"
        mkdir -p "$d"
        cp "$kb" "$d/Kbuild"
        # Copy the sources this group names (one "# src: path" line each).
        sed -n 's/^# src: //p' "$kb" | while read -r f; do
            cp "$ROOT$src/$f" "$d/" 2>/dev/null || true
            # Private headers next to the source.
            cp "$ROOT$src/$(dirname "$f")"/*.h "$d/" 2>/dev/null || true
        done
        if in_root make -C "/usr/src/linux-headers-$KVER" M="/tmp/kmod/$group" modules -j2 \
                >"$EXTRA/build-$group.log" 2>&1; then
            cp "$d"/*.ko "$EXTRA/"
            echo "$group: ok ($(cd "$d" && echo *.ko))" >>"$status"
        else
            echo "$group: FAILED (see $EXTRA/build-$group.log)" >>"$status"
            log "warning: out-of-tree group '$group' did not build (see $EXTRA/build-$group.log)"
        fi
    done
    rm -rf "$ROOT/tmp/kmod"
}
KMOD_STAMP="$(cat "$HERE"/kmod/Kbuild.* | sha256sum | cut -d' ' -f1)-$KVER"
if [[ ! -f "$EXTRA/stamp" || "$(cat "$EXTRA/stamp")" != "$KMOD_STAMP" ]]; then
    log "building out-of-tree virtio modules"
    build_kmods
    echo "$KMOD_STAMP" >"$EXTRA/stamp"
fi
grep -q '^gpio: ok' "$EXTRA/status.txt" && grep -q '^i2c: ok' "$EXTRA/status.txt" \
    || die "gpio-virtio / i2c-virtio did not build: $(cat "$EXTRA/status.txt")"
sed 's/^/provision: module group /' "$EXTRA/status.txt" >&2

# ------------------------------------------------------------ initramfs
log "building the initramfs"
STAGE="$CACHE/initramfs.d"
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,etc,proc,sys,dev,tmp,run,rig,root,mnt,usr/share}
mkdir -p "$STAGE/usr/libexec/bluetooth"   # bluetoothd, started by rig-bluetoothd
# usr/lib is lib (relative to usr/, so ../lib; a plain "lib" would point at itself).
ln -s ../lib "$STAGE/usr/lib"

# Binaries (paths inside the root). Real tools go to /usr/{bin,sbin} and come
# first in PATH; busybox fills the rest in /bin. /bin/sh is dash, which honours
# PATH (busybox sh would prefer its own i2c*/ip applets).
TOOLS=(
  /usr/sbin/i2cdetect /usr/sbin/i2cget /usr/sbin/i2cset /usr/sbin/i2cdump /usr/sbin/i2ctransfer
  /usr/bin/gpiodetect /usr/bin/gpioinfo /usr/bin/gpioget /usr/bin/gpioset /usr/bin/gpiomon /usr/bin/gpionotify /usr/bin/gpiofind
  /usr/bin/aplay /usr/bin/arecord /usr/bin/amixer /usr/bin/speaker-test /usr/bin/alsactl
  /usr/bin/cansend /usr/bin/candump /usr/bin/cangen /usr/bin/cansequence /usr/bin/isotpsend /usr/bin/isotprecv
  /usr/bin/hciconfig /usr/bin/btmgmt /usr/bin/hcitool /usr/bin/bluetoothctl
  /usr/bin/dbus-daemon /usr/bin/dbus-send /usr/libexec/bluetooth/bluetoothd
  /usr/bin/modetest /usr/bin/proptest /usr/bin/vbltest
  /usr/bin/ip /usr/sbin/ip /bin/ip
  /usr/bin/dash
)
copy_with_libs() {
    local bin="$1" dest="$2"
    [[ -e "$ROOT$bin" ]] || return 0
    cp -L "$ROOT$bin" "$STAGE$dest"
    in_root ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' >>"$STAGE/.libs" || true
}
: >"$STAGE/.libs"
for t in "${TOOLS[@]}"; do
    case "$t" in
        /usr/bin/dash) copy_with_libs "$t" /bin/sh ;;
        /bin/ip) ;;
        *) [[ -e "$STAGE/usr/sbin/$(basename "$t")" ]] || copy_with_libs "$t" "$t" ;;
    esac
done
# What host-built (bookworm) Rust test binaries need; trixie's glibc is newer.
for l in libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2; do
    [[ -e "$ROOT/lib/x86_64-linux-gnu/$l" ]] && echo "/lib/x86_64-linux-gnu/$l" >>"$STAGE/.libs"
done
sort -u "$STAGE/.libs" | while read -r lib; do
    case "$lib" in
        /lib64/*) cp -L "$ROOT$lib" "$STAGE/lib64/" ;;
        *) cp -L "$ROOT$lib" "$STAGE/lib/x86_64-linux-gnu/" ;;
    esac
done
rm -f "$STAGE/.libs"
# The rig ships a host test binary's other shared libraries itself; it needs
# to know which ones the guest already has.
(cd "$STAGE" && ls lib/x86_64-linux-gnu lib64) 2>/dev/null | grep '\.so' | sort -u >"$CACHE/initramfs-libs.txt"
[[ -e "$STAGE/lib64/ld-linux-x86-64.so.2" ]] || cp -L "$ROOT/lib64/ld-linux-x86-64.so.2" "$STAGE/lib64/"

cp "$ROOT/usr/bin/busybox" "$STAGE/bin/busybox"
for applet in $("$STAGE/bin/busybox" --list); do
    [[ "$applet" == busybox || "$applet" == sh ]] && continue
    for d in usr/bin usr/sbin; do [[ -e "$STAGE/$d/$applet" ]] && continue 2; done
    ln -sf busybox "$STAGE/bin/$applet"
done
# ALSA's configuration tree: aplay cannot open a device without it.
mkdir -p "$STAGE/usr/share"
cp -a "$ROOT/usr/share/alsa" "$STAGE/usr/share/" 2>/dev/null || true
echo 'root:x:0:0:root:/root:/bin/sh' >"$STAGE/etc/passwd"
echo 'root:x:0:' >"$STAGE/etc/group"

# Our own init and helpers.
cp "$HERE/init" "$STAGE/init"
chmod +x "$STAGE/init"
for h in "$HERE"/bin/*; do
    install -m 0755 "$h" "$STAGE/usr/bin/$(basename "$h")"
done
# Small static C helpers for what no packaged tool does (rpmsg endpoints,
# framebuffer readback), compiled in the root.
mkdir -p "$ROOT/tmp/rig-tools"
for c in "$HERE"/tools/*.c; do
    t="$(basename "$c" .c)"
    cp "$c" "$ROOT/tmp/rig-tools/"
    if in_root gcc -static -O2 -Wall -o "/tmp/rig-tools/$t" "/tmp/rig-tools/$t.c" \
            >"$CACHE/tool-$t.log" 2>&1; then
        install -m 0755 "$ROOT/tmp/rig-tools/$t" "$STAGE/usr/bin/$t"
    else
        log "warning: guest tool $t did not build (see $CACHE/tool-$t.log)"
    fi
done
rm -rf "$ROOT/tmp/rig-tools"

# Kernel modules: the listed ones plus their dependencies, uncompressed (the
# whole archive is gzipped anyway, and busybox modprobe wants plain .ko).
MSTAGE="$STAGE/lib/modules/$KVER"
mkdir -p "$MSTAGE/kernel" "$MSTAGE/extra"
cp "$KDIR/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$MSTAGE/" 2>/dev/null || true
cp "$EXTRA"/*.ko "$MSTAGE/extra/" 2>/dev/null || true
# A scratch tree with the out-of-tree modules so dependency resolution sees them.
mkdir -p "$KDIR/lib/modules/$KVER/extra"
cp "$EXTRA"/*.ko "$KDIR/lib/modules/$KVER/extra/" 2>/dev/null || true
depmod -b "$KDIR" "$KVER" 2>/dev/null || in_root true
wanted="$(grep -vE '^\s*(#|$)' "$HERE/modules.list" | tr '\n' ' ')"
extra_names="$(cd "$EXTRA" && ls *.ko 2>/dev/null | sed 's/\.ko$//' | tr '\n' ' ')"
: >"$STAGE/.mods"
for m in $wanted $extra_names; do
    if ! modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" >>"$STAGE/.mods" 2>/dev/null; then
        log "warning: module $m not found for $KVER"
    fi
done
grep -oE '/[^ ]+\.ko(\.xz|\.zst|\.gz)?' "$STAGE/.mods" | sort -u | while read -r f; do
    rel="${f#"$KDIR"/lib/modules/"$KVER"/}"
    mkdir -p "$MSTAGE/$(dirname "$rel")"
    case "$f" in
        *.ko.xz) xz -dc "$f" >"$MSTAGE/${rel%.xz}" ;;
        *.ko.zst) zstd -qdc "$f" >"$MSTAGE/${rel%.zst}" ;;
        *.ko.gz) gzip -dc "$f" >"$MSTAGE/${rel%.gz}" ;;
        *) cp "$f" "$MSTAGE/$rel" ;;
    esac
done
rm -f "$STAGE/.mods"
depmod -b "$STAGE" "$KVER" || die "depmod on the initramfs failed"
# Busybox modprobe reads the text files only.
(cd "$MSTAGE" && rm -f modules.*.bin)

(cd "$STAGE" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$CACHE/initramfs.cpio.gz.tmp"
mv "$CACHE/initramfs.cpio.gz.tmp" "$CACHE/initramfs.cpio.gz"

# The GL overlay (Mesa + rig-gltri) that only GL scenarios append: gl/overlay.sh.
# shellcheck source=rust-vmm-ci/guest/gl/overlay.sh
source "$HERE/gl/overlay.sh"
build_gl_overlay "$HERE/gl"

# ------------------------------------------------------------ accelerator probe
# KVM only when a real boot works with it: nested KVM on some hosts opens
# /dev/kvm fine and then dies with emulation failures. Otherwise TCG.
ACCEL=tcg
if [[ -r /dev/kvm && -w /dev/kvm && "${VHOST_DEVICE_RIG_NO_KVM_PROBE:-}" != 1 ]]; then
    probe="$(mktemp -d)"
    mkdir "$probe/rig"
    echo 'exit 0' >"$probe/rig/script.sh"
    (cd "$probe" && printf 'rig\nrig/script.sh\n' | cpio -o -H newc --quiet >rig.cpio)
    cp "$CACHE/initramfs.cpio.gz" "$probe/initrd"
    size=$(stat -c %s "$probe/initrd")
    truncate -s $(( (size + 3) / 4 * 4 )) "$probe/initrd"
    cat "$probe/rig.cpio" >>"$probe/initrd"
    timeout 20 "$CACHE/qemu" -nodefaults -no-user-config -machine q35 -accel kvm -cpu host -m 256M \
        -kernel "$BOOT_KERNEL" -initrd "$probe/initrd" -append "console=ttyS0 quiet panic=-1" \
        -display none -serial "file:$probe/serial" -no-reboot >"$probe/qemu.log" 2>&1 || true
    if grep -q '^@@RIG-EXIT 0@@' "$probe/serial" 2>/dev/null; then
        ACCEL=kvm
    else
        log "KVM probe boot failed ($(tail -n1 "$probe/qemu.log" 2>/dev/null)); using TCG"
    fi
    rm -rf "$probe"
fi
log "accelerator: $ACCEL"

# ------------------------------------------------------------ summary
cat >"$CACHE/env" <<EOF
VHOST_DEVICE_GUEST_QEMU=$CACHE/qemu
VHOST_DEVICE_GUEST_KERNEL=$BOOT_KERNEL
VHOST_DEVICE_GUEST_INITRD=$CACHE/initramfs.cpio.gz
VHOST_DEVICE_GUEST_KVER=$KVER
VHOST_DEVICE_GUEST_QEMU_VERSION=$QEMU_VERSION
VHOST_DEVICE_GUEST_MODULES_STATUS=$EXTRA/status.txt
VHOST_DEVICE_GUEST_ACCEL=$ACCEL
VHOST_DEVICE_GUEST_ROOT=$ROOT
VHOST_DEVICE_GUEST_GL_OVERLAY=$GL_OVERLAY
EOF
echo "$STAMP" >"$CACHE/stamp"
log "done: $(du -sh "$CACHE/initramfs.cpio.gz" | cut -f1) initramfs, kernel $KVER"
cat "$CACHE/env"
