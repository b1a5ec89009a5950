#!/bin/bash
# PID 1 of a capstan lab host. capstan.lab.host starts it as
#   nsenter --net=/run/netns/<ns> unshare --mount --uts --ipc --pid --fork --kill-child bash hostinit.sh
# so it runs in the host's network namespace and in fresh mount, UTS, IPC and PID namespaces.
# It boots them into a machine: the machine's / overlaid with this host's upper layer (prepared by
# capstan.lab.rootfs on a tmpfs), its own /proc and /sys, fresh /run, /tmp and /dev/shm, then it
# becomes the systemctl emulator, which starts the enabled units (sshd; later etcd, containerd...).
# Environment: CL_HOST (hostname), CL_DIR (this host's state dir), CL_HIDE (lab state root to hide).
set -eu
: "${CL_HOST:?}" "${CL_DIR:?}" "${CL_HIDE:?}"
R=$CL_DIR/root

# Report our PID as the root namespace sees it (this /proc is still the machine's).
read -r pid _ < /proc/self/stat
echo "$pid" > "$CL_DIR/pid.new"
mv "$CL_DIR/pid.new" "$CL_DIR/pid"

# Nothing we mount may propagate back to the machine.
mount --make-rprivate /
mkdir -p "$CL_DIR/work" "$CL_DIR/containerd" "$R"

# Right after a crash the previous incarnation's overlay may still be going away, and the kernel
# refuses to reuse its upper/work dirs until it has: retry for a bounded time.
tries=0
until mount -t overlay overlay -o "lowerdir=/,upperdir=$CL_DIR/upper,workdir=$CL_DIR/work" "$R" 2>/dev/null; do
  tries=$((tries + 1))
  if [ "$tries" -ge 200 ]; then echo "hostinit: cannot mount the overlay root" >&2; exit 1; fi
  sleep 0.05
done

mount -t proc proc "$R/proc"                       # this PID namespace
mount -t sysfs sysfs "$R/sys"                      # this network namespace's interfaces
mount --rbind /sys/fs/cgroup "$R/sys/fs/cgroup"    # shared with the machine (no cgroup namespace)
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
# containerd's overlayfs snapshotter cannot work on an overlay: give it a tmpfs-backed directory
# that, like a disk, survives a reboot of the host.
mkdir -p "$R/var/lib/containerd"
mount --bind "$CL_DIR/containerd" "$R/var/lib/containerd"
# The lab's own files (keys, other hosts' layers, the mirror) are on the machine's disk: hide them.
if [ -d "$R$CL_HIDE" ]; then mount -t tmpfs -o ro,size=4k,mode=755 tmpfs "$R$CL_HIDE"; fi

hostname "$CL_HOST"
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot

# What systemd would do early at boot: create the /run, /var and /tmp entries that packages declare in
# tmpfiles.d (e.g. /run/haproxy). /dev, /sys and /proc are the machine's own and are left alone;
# /run/nologin is skipped because no systemd-user-sessions will remove it once the host is up.
if [ -x /usr/bin/systemd-tmpfiles ]; then
  /usr/bin/systemd-tmpfiles --create --boot --exclude-prefix=/dev --exclude-prefix=/sys \
    --exclude-prefix=/proc --exclude-prefix=/run/nologin >/dev/null 2>&1 || true
fi

exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root \
  /usr/bin/systemctl -c InitLoopSleep=1 init
