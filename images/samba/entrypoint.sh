#!/bin/sh
# Writes smb.conf from SMB_CONF and the account guests are mapped to (the configured data owner's
# uid) into memory (the root filesystem is read-only: /etc/samba is a tmpfs, and the image's
# /etc/passwd and /etc/group point into /run), then runs smbd in the foreground with its log on stdout.
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
# The stack passes the config in SMB_CONF: the docker provider's uploads cannot write into a
# read-only root. A file already there (a container made without the variable) is used as it is.
if [ -n "${SMB_CONF:-}" ]; then printf '%s\n' "$SMB_CONF" >/etc/samba/smb.conf; fi
[ -f /etc/samba/smb.conf ] || { echo "no /etc/samba/smb.conf: the stack passes it in SMB_CONF" >&2; exit 1; }
exec smbd --foreground --no-process-group --debug-stdout "$@"
