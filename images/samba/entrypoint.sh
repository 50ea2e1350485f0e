#!/bin/sh
# Two modes:
# - (default) serve: checks that /data is the share's directory on the intended disk and owned by
#   DATA_UID, writes smb.conf from SMB_CONF and the data owner's account (guests are mapped to it;
#   with SAMBA_AUTH=password it logs in with the share's password) into memory (the root filesystem
#   is read-only: /etc/samba is a tmpfs, and the image's /etc/passwd and /etc/group point into
#   /run), then runs smbd in the foreground with its log on stdout;
# - `migrate-owner <old uid> <new uid>`: hands every file of /data owned by <old uid> to <new uid>,
#   the one-shot migration after a change of samba.dataUid.
set -eu
uid="${DATA_UID:-1000}"
MARKER_NAME=.timemachine-storage
MARKER=/storage/$MARKER_NAME
# Set by the stack so that a refusal names the real paths and commands; placeholders otherwise.
root="${TM_STORAGE_ROOT:-<storageRoot>}"
share="${TM_SHARE:-<share>}"
container="${TM_CONTAINER:-<container>}"
image="${TM_IMAGE:-<samba image>}"

refuse() {
  echo "tm-samba: refusing to serve $root/$share: $*" >&2
  exit 1
}

uid_ok() { case "$1" in ''|*[!0-9]*) return 1 ;; *) return 0 ;; esac; }

case "${1:-}" in
migrate-owner)
  old="${2:-}" new="${3:-}"
  uid_ok "$old" && uid_ok "$new" || { echo "usage: migrate-owner <old uid> <new uid>" >&2; exit 2; }
  [ -d /data ] || { echo "migrate-owner: mount the share's directory at /data" >&2; exit 2; }
  count=$(find /data -user "$old" | wc -l)
  # --from: only what the old owner has; anything else stays as it is (and the next start names it).
  chown -R --from="$old" "$new:$new" /data
  echo "tm-samba: handed $count entries of /data from uid $old to uid $new"
  exit 0
  ;;
esac

# The marker is bound in from <storageRoot> by itself (read-only), so the container sees no other
# share. Docker refuses to start when a bind source is missing; this covers a container made without it.
[ -f "$MARKER" ] || refuse "$MARKER is missing: the storage root is not the backup disk or the disk" \
  "is not mounted. Mount it at $root (it carries $MARKER_NAME), then: docker restart $container"
[ -d /data ] || refuse "/data is not a directory: the stack binds $root/$share there"

mkdir -p /run/nss /run/samba /var/cache/samba /var/lib/samba/private
{ cat /etc/nss-base/passwd; echo "timemachine:x:$uid:$uid::/data:/usr/sbin/nologin"; } >/run/nss/passwd
{ cat /etc/nss-base/group; echo "timemachine:x:$uid:"; } >/run/nss/group

# Ownership. Backups are 0700/0600, so files that another uid owns lock the Mac out. A recursive
# chown over a large backup at every start would stall it, and a silent one would hide a mistake;
# instead: an empty directory (new) is handed over, anything else owned by another uid is refused
# with the migration to run. Checked: the directory itself and two levels below it (a
# sparsebundle and its bands/, token, Info.plist), not the whole tree.
migrate_hint() {
  echo "owned by uid $1, but samba.dataUid is $uid: the Mac would be locked out of its backups." \
    "Either set samba.dataUid back to $1, or hand the files to uid $uid once:" \
    "docker run --rm --network none --mount type=bind,source=$root/$share,target=/data $image migrate-owner $1 $uid" \
    "&& docker restart $container"
}
top="$(stat -c %u /data)"
if [ "$top" != "$uid" ]; then
  if [ -z "$(ls -A /data)" ]; then
    # The mode first, while root still owns it (the container has CAP_CHOWN, not CAP_FOWNER).
    [ "$(stat -c %a /data)" = 700 ] || chmod 0700 /data || refuse \
      "set its mode to 0700 on the host: chmod 0700 $root/$share"
    chown "$uid:$uid" /data
  else
    refuse "the directory is $(migrate_hint "$top")"
  fi
fi
[ "$(stat -c %a /data)" = 700 ] || refuse "set its mode to 0700 on the host: chmod 0700 $root/$share"
other="$(find /data -mindepth 1 -maxdepth 2 ! -user "$uid" -printf '%U %P\n' -quit)"
[ -z "$other" ] || refuse "${other#* } is $(migrate_hint "${other%% *}")"

# The stack passes the config in SMB_CONF: the docker provider's uploads cannot write into a
# read-only root. A file already there (a container made without the variable) is used as it is.
if [ -n "${SMB_CONF:-}" ]; then printf '%s\n' "$SMB_CONF" >/etc/samba/smb.conf; fi
[ -f /etc/samba/smb.conf ] || { echo "no /etc/samba/smb.conf: the stack passes it in SMB_CONF" >&2; exit 1; }

# Logins (SAMBA_AUTH, from samba.auth): guests, or the data owner's account with the share's
# password. The stack writes that password to the state volume (0600, never in the environment)
# before the container starts; it is set in passdb (tdbsam, on the same volume) at every start, so
# the file is what counts.
credentials=/var/lib/samba/private/timemachine.credentials
case "${SAMBA_AUTH:-guest}" in
guest)
  # Left from password mode: nobody logs in with an old password.
  rm -f "$credentials"
  if pdbedit --list 2>/dev/null | grep -q '^timemachine:'; then pdbedit --delete --user=timemachine >/dev/null; fi
  ;;
password)
  [ -f "$credentials" ] || refuse "$credentials is missing: the stack writes it (samba.auth: password)" \
    "before the container starts; if it was removed, give the share a new password:" \
    "pulumi up --replace <the share's SambaCredentials URN, from pulumi stack --show-urns>"
  chmod 0600 "$credentials"
  password="$(sed -n 's/^password = //p' "$credentials")"
  [ -n "$password" ] || refuse "$credentials has no password line"
  printf '%s\n%s\n' "$password" "$password" | smbpasswd -s -a timemachine >/dev/null
  unset password
  ;;
*) refuse "SAMBA_AUTH is '$SAMBA_AUTH'; it is guest or password (samba.auth)" ;;
esac
exec smbd --foreground --no-process-group --debug-stdout "$@"
