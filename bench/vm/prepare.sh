#!/usr/bin/env bash
# Prepares what bench/vm/boot.sh boots: Debian's own kernel (the package linux-image-amd64
# points at, fetched with `apt-get download` and unpacked with `dpkg -x`, never installed)
# and a tiny initramfs (busybox-static plus the modules that mount the host's root over
# 9p). Nothing is fetched except through apt. Idempotent: a prepared kernel is reused.
#
# Prints the directory holding vmlinuz and initrd.gz.
#
# usage: bench/vm/prepare.sh
#   GR_VM_CACHE: where kernels and initramfs live [/var/tmp/gpsrelay-vm]
set -euo pipefail
cache=${GR_VM_CACHE:-/var/tmp/gpsrelay-vm}
here=$(cd "$(dirname "$0")" && pwd)

need_pkg() { # need_pkg COMMAND PACKAGE: install PACKAGE from apt when COMMAND is missing
    command -v "$1" >/dev/null 2>&1 && return 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2
}
need_pkg qemu-system-x86_64 qemu-system-x86
need_pkg busybox busybox-static
need_pkg gzip gzip
if ! /bin/busybox --list 2>/dev/null | grep -qx insmod; then
    echo "prepare: /bin/busybox is not busybox-static (no insmod applet)" >&2
    exit 1
fi

# The versioned package linux-image-amd64 depends on, e.g. linux-image-6.1.0-56-amd64.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
fi
[ -n "$pkg" ] || {
    echo "prepare: apt knows no linux-image-amd64" >&2
    exit 1
}
kver=${pkg#linux-image-}
dir=$cache/$kver

# The modules that mount the root, in dependency order (their modinfo "depends=" fields in
# Debian's 6.1 kernel): virtio PCI transport, then 9p over virtio. Everything else the
# guest needs (serial console, tmpfs, devtmpfs, loopback) is built in.
modules=(
    drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
    drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci
    fs/netfs/netfs fs/fscache/fscache net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p
)

if [ ! -s "$dir/initrd.gz" ] || [ "$here/init" -nt "$dir/initrd.gz" ]; then
    mkdir -p "$dir"
    work=$(mktemp -d "$cache/prep.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    if [ ! -s "$dir/vmlinuz" ]; then
        # _apt cannot write into a root-only directory; a world-writable one is fine.
        chmod 1777 "$work"
        (cd "$work" && apt-get download -q "$pkg" >&2)
        dpkg -x "$work"/"$pkg"_*.deb "$work/pkg"
        cp "$work/pkg/boot/vmlinuz-$kver" "$dir/vmlinuz"
        cp "$work/pkg/boot/config-$kver" "$dir/config"
        mkdir -p "$dir/modules"
        for m in "${modules[@]}"; do
            src=$work/pkg/lib/modules/$kver/kernel/$m.ko
            [ -e "$src" ] || {
                echo "prepare: $pkg has no $m.ko" >&2
                exit 1
            }
            cp "$src" "$dir/modules/"
        done
    fi
    root=$work/initramfs
    mkdir -p "$root"/{bin,dev,proc,sys,newroot,modules}
    cp /bin/busybox "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    cp "$here/init" "$root/init"
    chmod 755 "$root/init"
    for m in "${modules[@]}"; do cp "$dir/modules/${m##*/}.ko" "$root/modules/"; done
    printf '%s\n' "${modules[@]##*/}" >"$root/modules/order"
    (cd "$root" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) | gzip -9 >"$dir/initrd.gz.tmp"
    mv "$dir/initrd.gz.tmp" "$dir/initrd.gz"
fi
echo "$dir"
