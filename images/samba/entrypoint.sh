#!/bin/sh
# Writes the account guests are mapped to (the configured data owner's uid) into /run, where the
# image's /etc/passwd and /etc/group point (the root filesystem is read-only), then runs smbd in the
# foreground with its log on stdout.
set -eu
uid="${DATA_UID:-1000}"
mkdir -p /run/nss /run/samba /var/cache/samba /var/lib/samba/private
{ cat /etc/nss-base/passwd; echo "timemachine:x:$uid:$uid::/data:/usr/sbin/nologin"; } >/run/nss/passwd
{ cat /etc/nss-base/group; echo "timemachine:x:$uid:"; } >/run/nss/group
# Only the top directory, and only when it is not right yet: a recursive chown over a large backup
# would stall every start. The mode first, while root still owns a directory Docker just made (the
# container has CAP_CHOWN, not CAP_FOWNER).
[ "$(stat -c %a /data)" = 700 ] || chmod 0700 /data || {
  echo "/data: set its mode to 0700 on the host (chmod 0700 <storageRoot>/<share>)" >&2; exit 1; }
[ "$(stat -c %u:%g /data)" = "$uid:$uid" ] || chown "$uid:$uid" /data
[ -f /etc/samba/smb.conf ] || { echo "no /etc/samba/smb.conf: the stack uploads it" >&2; exit 1; }
exec smbd --foreground --no-process-group --debug-stdout "$@"
