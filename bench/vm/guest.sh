#!/bin/bash
# PID 1 of the guest once the host's root is mounted (read-only, over 9p): writable
# tmpfs where the benchmarks write, the loopback up, the descriptor limits raised (the
# guest's own kernel, and we are real root in it), then the job the host put in the
# 9p share "job" (job.sh, run from the repository's root), then power off.
# Everything it prints goes to the serial console, which the host captures.
# Lines starting "gpsrelay-vm:" are for the host script; the exit line is always last.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
# Descriptors per process (hard and soft RLIMIT_NOFILE): 50,000 consoles need one each in
# the daemon and one each in loadgen, with room to spare.
NOFILE_MAX=200000
# System-wide open files: both processes together, and a margin.
FILE_MAX=1000000

poweroff_now() {
    sync
    busybox poweroff -f
    echo o >/proc/sysrq-trigger # if busybox is missing
    sleep 60
}
fail() {
    echo "gpsrelay-vm: setup failed: $*"
    echo "gpsrelay-vm: exit 1"
    poweroff_now
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
for d in /tmp /run /var/tmp /root; do mount -t tmpfs -o mode=1777 tmpfs "$d" || fail "tmpfs $d"; done
mkdir -p /run/job
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288 job /run/job || fail "mount job share"

ip link set lo up || fail "loopback up"
sysctl -q -w fs.nr_open=$((NOFILE_MAX * 2)) fs.file-max=$FILE_MAX || fail "sysctl"
ulimit -Hn $NOFILE_MAX || fail "ulimit -Hn"
ulimit -n $NOFILE_MAX || fail "ulimit -n"

echo "gpsrelay-vm: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) " MiB" }' /proc/meminfo)," \
    "$(dmesg | grep -o 'Hypervisor detected: .*' | head -1), RLIMIT_NOFILE $(ulimit -Hn)"
repo=$(cat /run/job/repo)
cd "$repo" || fail "no $repo"
bash /run/job/job.sh
rc=$?
echo "gpsrelay-vm: exit $rc"
poweroff_now
