#!/bin/sh
# Creates the account guests are mapped to with the configured data owner's uid, then runs smbd in
# the foreground with its log on stdout.
set -eu
uid="${DATA_UID:-1000}"
if ! getent group timemachine >/dev/null; then groupadd -o -g "$uid" timemachine; fi
if ! getent passwd timemachine >/dev/null; then
  useradd -o -u "$uid" -g timemachine -M -d /data -s /usr/sbin/nologin timemachine
fi
mkdir -p /data /run/samba /var/lib/samba/private
# Only the top directory: a recursive chown over a large backup would stall every start.
chown timemachine:timemachine /data
chmod 0700 /data
[ -f /etc/samba/smb.conf ] || { echo "no /etc/samba/smb.conf: the stack uploads it" >&2; exit 1; }
exec smbd --foreground --no-process-group --debug-stdout "$@"
