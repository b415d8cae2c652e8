#!/usr/bin/env bash
# Boots a throw-away KVM guest that runs one job and powers off: Debian's own kernel (from
# bench/vm/prepare.sh), 2 vCPUs, the host's whole root filesystem shared read-only over 9p
# (so the guest runs the host's bash, curl, libraries and our binaries as they are), tmpfs
# for every directory it writes, no network device at all (only the guest's loopback).
#
# JOB_DIR must hold job.sh, run by bash in the guest from the repository's root, and any
# files it needs; the guest sees it read-only at /run/job. What the guest prints on its
# serial console is shown as it comes and kept in JOB_DIR/serial.log. qemu is killed
# whatever happens to this script (trap), and after GR_VM_TIMEOUT seconds in any case.
# Exits with the job's exit status (1 when the guest never reported one).
#
# usage: bench/vm/boot.sh JOB_DIR
#   GR_VM_MEM: guest memory in MiB [2048]   GR_VM_CPUS: vCPUs [2]
#   GR_VM_TIMEOUT: seconds before qemu is killed [900]
#   GR_VM_ACCEL: kvm, or tcg to emulate when KVM cannot run the guest [kvm]; under TCG
#     only memory figures mean anything (CPU time is the emulator's), and it is several
#     times slower.
set -euo pipefail
job=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mem=${GR_VM_MEM:-2048} cpus=${GR_VM_CPUS:-2} limit=${GR_VM_TIMEOUT:-900} accel=${GR_VM_ACCEL:-kvm}
[ -f "$job/job.sh" ] || {
    echo "boot: $job/job.sh is missing" >&2
    exit 2
}
kdir=$("$here/prepare.sh")
case $accel in
kvm)
    [ -w /dev/kvm ] || {
        echo "boot: /dev/kvm is missing or not writable: no KVM (GR_VM_ACCEL=tcg emulates;" \
            "its CPU figures mean nothing)" >&2
        exit 2
    }
    # A /dev/kvm served by KVM-PVM (module kvm_pvm, as in this Firecracker VM) runs only
    # kernels built with CONFIG_PVM_GUEST; any other kernel spins forever after its
    # decompressor (seen: "Probing EDD ... ok", then 100% CPU and nothing more).
    if [ -d /sys/module/kvm_pvm ] && ! grep -qx 'CONFIG_PVM_GUEST=y' "$kdir/config"; then
        echo "boot: /dev/kvm is KVM-PVM (module kvm_pvm), which boots only CONFIG_PVM_GUEST" \
            "kernels; $(basename "$kdir") is not one. No KVM guest possible here" \
            "(GR_VM_ACCEL=tcg emulates; its CPU figures mean nothing)." >&2
        exit 2
    fi
    # -cpu host less arch-capabilities: qemu 7.2 aborts when the nested KVM refuses the
    # write of that MSR (0x10a), as it does here.
    cpu=host,-arch-capabilities
    ;;
tcg)
    echo "boot: GR_VM_ACCEL=tcg: emulated CPU; memory figures hold, CPU figures do not" >&2
    cpu=max
    ;;
*)
    echo "boot: GR_VM_ACCEL must be kvm or tcg" >&2
    exit 2
    ;;
esac
echo "$repo" >"$job/repo"

qpid=
stop_qemu() {
    [ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop_qemu EXIT
trap 'exit 130' INT TERM

# accel= names one accelerator, with no fallback: qemu fails rather than silently
# emulating. multidevs=remap: the host's / spans several filesystems; this keeps the 9p
# inode numbers unique.
: >"$job/serial.log"
timeout --kill-after=10 "$limit" qemu-system-x86_64 \
    -machine q35,accel="$accel" -cpu "$cpu" -smp "$cpus" -m "$mem" \
    -kernel "$kdir/vmlinuz" -initrd "$kdir/initrd.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 gr_init=$repo/bench/vm/guest.sh" \
    -nodefaults -nic none -display none -no-reboot -serial "file:$job/serial.log" \
    -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev local,id=job,path="$job",security_model=none,readonly=on \
    -device virtio-9p-pci,fsdev=job,mount_tag=job \
    2>"$job/qemu.err" &
qpid=$!
tail -n +1 -F --pid="$qpid" "$job/serial.log" 2>/dev/null | tr -d '\r'
qrc=0
wait "$qpid" || qrc=$?
qpid=
rc=$(tr -d '\r' <"$job/serial.log" | sed -n 's/^gpsrelay-vm: exit \([0-9]*\)$/\1/p' | tail -1)
if [ -z "$rc" ]; then
    [ "$qrc" -eq 124 ] && echo "boot: guest still running after $limit s: killed" >&2
    echo "boot: the guest reported no exit status (qemu exit $qrc)" >&2
    cat "$job/qemu.err" >&2
    exit 1
fi
exit "$rc"
