#!/bin/sh
# Install the packages for real, in a throw-away chroot, and take them out again.
# Run as `unshare --mount --propagation private sh chroot_install.sh DIR DEB...`: the
# chroot's /usr, /etc and /var are overlays of this machine's with their upper layers in
# a tmpfs that exists only in this mount namespace, so dpkg, the maintainer scripts and
# the programs write nothing to this machine. Exit 77: the sandbox cannot be made here.
set -eu
R=$1
shift
mount -t tmpfs multiflexi-chroot "$R" || exit 77
mkdir -p "$R/proc" "$R/dev" "$R/tmp" "$R/run" "$R/debs"
for d in usr etc var; do
    mkdir -p "$R/$d" "$R/up/$d" "$R/work/$d"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$R/up/$d,workdir=$R/work/$d" "$R/$d" \
        || exit 77
    mountpoint -q "$R/$d" || exit 77
done
for d in bin lib lib64 sbin; do
    if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"; fi
done
mount --bind /dev "$R/dev"
mount -t proc proc "$R/proc"
cp "$@" "$R/debs/"

in_root() { chroot "$R" "$@"; }
step() { echo "== $*"; }

step install
in_root sh -c 'dpkg -i /debs/*.deb'
step user
in_root getent passwd multiflexi
step modes
in_root stat -c '%n %U:%G %a' /var/lib/multiflexi /etc/multiflexi/multiflexi.env
step enabled
in_root ls /etc/systemd/system/multi-user.target.wants
step status
in_root su -s /bin/sh multiflexi -c '/usr/bin/multiflexi-cli -f json status'
step bytecode
find "$R/usr/lib/multiflexi/venv" -name '*.pyc' | wc -l
step remove
in_root sh -c 'dpkg -r multiflexi-executor multiflexi-scheduler multiflexi-cli multiflexi-common'
ls "$R/usr/lib/multiflexi" 2>/dev/null || echo "no /usr/lib/multiflexi"
step purge
in_root sh -c 'dpkg -P multiflexi-common multiflexi-executor multiflexi-scheduler multiflexi-cli'
ls "$R/etc/multiflexi" 2>/dev/null || echo "no /etc/multiflexi"
ls "$R/var/lib/multiflexi"
step end
