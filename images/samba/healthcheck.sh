#!/bin/sh
# The Samba container's health check: the backup filesystem takes a write (a hidden probe file at the
# top of /data, never inside a bundle, written as the data owner, fsynced, read back and removed), and
# smbd serves the share (a session and a tree connect). A read-only, full or failed backup filesystem
# makes the container unhealthy within interval × retries; the output (docker inspect:
# .State.Health.Log) says why. The stack also runs it once per new container at `pulumi up`
# (timemachine/dynamic/samba_ready.py).
set -u
uid="${DATA_UID:-1000}"
probe=/data/.timemachine-probe
fail() {
  echo "unhealthy: $*"
  exit 1
}
# As the data owner: a probe left by a check killed halfway is the owner's, which the entrypoint's
# ownership check accepts, and smbd serves it to the Mac like any of its files.
as_owner() { setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@"; }
token="$(date +%s.%N)-$$"
out=$(printf '%s\n' "$token" | as_owner dd of="$probe" conv=fsync status=none 2>&1) ||
  fail "cannot write $probe on the backup filesystem: $out"
back=$(as_owner cat "$probe" 2>&1) || fail "cannot read $probe back: $back"
[ "$back" = "$token" ] || fail "$probe read back differs from what was written"
out=$(as_owner rm -f "$probe" 2>&1) || fail "cannot remove $probe: $out"
case "${SAMBA_AUTH:-guest}" in
password) login="--authentication-file=/var/lib/samba/private/timemachine.credentials" ;;
*) login="--no-pass" ;;
esac
# A session and a tree connect to the share itself (TM_SHARE, set by the stack), not the share list:
# listing goes through the RPC services, which made smbd start samba-dcerpcd and two rpcd workers that
# the next check kept alive, about 20 MiB in every idle container. Without TM_SHARE, the list.
if [ -n "${TM_SHARE:-}" ]; then
  out=$(smbclient "$login" "//127.0.0.1/$TM_SHARE" --command=exit 2>&1)
else
  out=$(smbclient "$login" --list=127.0.0.1 2>&1)
fi || fail "smbd does not answer: $(printf '%s\n' "$out" | tail -n 1)"
echo "healthy: the backup filesystem takes writes and smbd answers"
