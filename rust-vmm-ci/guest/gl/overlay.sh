# shellcheck shell=bash
# Sourced by rust-vmm-ci/guest/provision.sh (after the base initramfs is
# built): the optional GL overlay that only GL scenarios append to the
# base initramfs. It holds Mesa's EGL/GBM/GLES stack (with the virgl
# driver, libgallium and the libLLVM it links, about 200 MB) and
# rig-gltri, the rig's own GL program. It is an uncompressed cpio so a TCG
# guest does not spend seconds gunzipping it, and it is kept out of the
# base initramfs that every scenario boots.
#
# Uses provision.sh's ROOT, CACHE, in_root, log and die; writes
# $CACHE/initramfs-gl.cpio and sets GL_OVERLAY to it.

GL_PKGS=(libegl-mesa0 mesa-libgallium libgbm1 libgl1-mesa-dri libegl-dev libgles-dev libgbm-dev libdrm-dev)

build_gl_overlay() {
    local here="$1" stage="$CACHE/initramfs-gl.d" mlib=/usr/lib/x86_64-linux-gnu
    log "GL overlay: installing Mesa in the root (${GL_PKGS[*]})"
    in_root apt-get install -y -qq --no-install-recommends "${GL_PKGS[@]}" >>"$CACHE/apt.log" 2>&1 \
        || die "apt-get install of Mesa in the root failed, see $CACHE/apt.log"
    in_root apt-get clean >/dev/null 2>&1 || true

    mkdir -p "$ROOT/tmp/rig-gl"
    cp "$here/rig-gltri.c" "$ROOT/tmp/rig-gl/"
    in_root gcc -O2 -Wall -Wextra -I/usr/include/libdrm -o /tmp/rig-gl/rig-gltri /tmp/rig-gl/rig-gltri.c \
        -lEGL -lGLESv2 -lgbm -ldrm >"$CACHE/tool-rig-gltri.log" 2>&1 \
        || die "rig-gltri did not build, see $CACHE/tool-rig-gltri.log"

    rm -rf "$stage"
    mkdir -p "$stage/usr/bin" "$stage/lib/x86_64-linux-gnu/gbm" "$stage/lib/x86_64-linux-gnu/dri" \
        "$stage/usr/share/glvnd/egl_vendor.d"
    install -m 0755 "$ROOT/tmp/rig-gl/rig-gltri" "$stage/usr/bin/rig-gltri"

    # What Mesa loads at run time, not only what ldd of the program names:
    # the glvnd EGL vendor, the GBM backend and the gallium megadriver (the
    # virtio_gpu driver is inside it; dri/ keeps the names a loader looks for).
    local loaded=(/tmp/rig-gl/rig-gltri)
    cp -L "$ROOT$mlib/gbm/dri_gbm.so" "$stage/lib/x86_64-linux-gnu/gbm/"
    cp -a "$ROOT$mlib/dri/libdril_dri.so" "$ROOT$mlib/dri/virtio_gpu_dri.so" "$stage/lib/x86_64-linux-gnu/dri/"
    cp "$ROOT/usr/share/glvnd/egl_vendor.d/50_mesa.json" "$stage/usr/share/glvnd/egl_vendor.d/"
    loaded+=("$mlib/libEGL_mesa.so.0" "$mlib/gbm/dri_gbm.so" "$mlib/dri/libdril_dri.so")
    local g
    for g in "$ROOT$mlib"/libgallium-*.so; do loaded+=("${g#"$ROOT"}"); done

    # Their libraries, less those the base initramfs already has.
    local have="$CACHE/initramfs-libs.txt" lib name
    {
        printf '%s\n' "${loaded[@]:1}"
        for f in "${loaded[@]}"; do
            in_root ldd "$f" 2>/dev/null | grep -oE '=> /[^ ]+' | cut -c4- || true
        done
    } | sort -u | while read -r lib; do
        name="$(basename "$lib")"
        [[ "$lib" == */gbm/* || "$lib" == */dri/* ]] && continue
        grep -qxF "$name" "$have" && continue
        cp -L "$ROOT$lib" "$stage/lib/x86_64-linux-gnu/$name"
    done
    rm -rf "$ROOT/tmp/rig-gl"
    [[ -e "$stage/lib/x86_64-linux-gnu/libEGL.so.1" ]] || die "GL overlay: libEGL.so.1 missing"

    (cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) >"$CACHE/initramfs-gl.cpio.tmp"
    mv "$CACHE/initramfs-gl.cpio.tmp" "$CACHE/initramfs-gl.cpio"
    rm -rf "$stage"
    GL_OVERLAY="$CACHE/initramfs-gl.cpio"
    log "GL overlay: $(du -h "$GL_OVERLAY" | cut -f1) ($GL_OVERLAY)"
}
