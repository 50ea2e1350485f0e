#!/bin/sh
# Moves an existing share's plain directory into a btrfs subvolume of its own, so that its quota is
# enforced (docs/operations.md, Quotas: moving a share into a subvolume). Run it as root on the Docker
# host, with btrfs-progs installed:
#
#   scripts/migrate_share_to_subvolume.sh <storage root> <share> [<Samba container>]
#
# The share's Samba container (default tm-<share>-samba) is stopped for the copy and started again
# after. The copy is a reflink copy (no data is duplicated on the disk) with modes, owners, times,
# links and extended attributes (where Samba keeps the streams), checked against the original
# before anything is renamed. The original stays, renamed to <storage root>/.<share>.before-subvolume:
# remove it once the Mac's next backup has worked. The limit is the size the container's smb.conf
# tells the Mac (fruit:time machine max size) plus the stack's headroom (1 %, at least 64 MiB:
# timemachine/dynamic/share_quota.py, enforced_limit); then run `pulumi up --refresh`.
set -eu
root="${1:?usage: migrate_share_to_subvolume.sh <storage root> <share> [<container>]}"
share="${2:?usage: migrate_share_to_subvolume.sh <storage root> <share> [<container>]}"
container="${3:-tm-$share-samba}"
dir="$root/$share"
new="$root/.$share.subvolume"
old="$root/.$share.before-subvolume"

die() {
  echo "migrate: $*" >&2
  exit 1
}
[ -f "$root/.timemachine-storage" ] || die "$root has no .timemachine-storage: not the backup disk"
[ "$(stat -f -c %T "$root")" = btrfs ] || die "$root is $(stat -f -c %T "$root"), not btrfs: nothing to migrate to"
[ -d "$dir" ] || die "$dir is not a directory"
[ "$(stat -c %i "$dir")" != 256 ] || die "$dir is already a subvolume"
[ ! -e "$new" ] && [ ! -e "$old" ] || die "$new or $old exists (an earlier run?): look at them and remove what is not needed"
command -v btrfs >/dev/null || die "btrfs is not installed (apt-get install btrfs-progs)"

# The size the Mac is told, from the running container's smb.conf; none: no quota.
limit=$(docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$container" |
  sed -n 's/^ *fruit:time machine max size = *//p' | head -n 1)
running=$(docker inspect --format '{{.State.Running}}' "$container")

listing() { (cd "$1" && find . -printf '%p %y %m %U %G %s %T@ %l\n' | LC_ALL=C sort); }

echo "migrate: stopping $container"
docker stop "$container" >/dev/null
restart() { if [ "$running" = true ]; then docker start "$container" >/dev/null && echo "migrate: started $container"; fi; }
trap 'echo "migrate: failed; $dir is unchanged" >&2; rm -rf "$new" 2>/dev/null; btrfs subvolume delete "$new" >/dev/null 2>&1; restart' EXIT

btrfs quota enable "$root"
btrfs subvolume create "$new" >/dev/null
# The directory's own mode, owner and times come with `$dir/.`.
cp -dR --preserve=mode,ownership,timestamps,links,xattr --reflink=always "$dir/." "$new/"
[ "$(listing "$dir")" = "$(listing "$new")" ] || die "the copy's listing differs from $dir"
diff -r --no-dereference "$dir" "$new" >/dev/null || die "the copy's content differs from $dir"
if command -v getfattr >/dev/null; then
  [ "$(cd "$dir" && getfattr -R -d -m - . 2>/dev/null)" = "$(cd "$new" && getfattr -R -d -m - . 2>/dev/null)" ] ||
    die "the copy's extended attributes differ from $dir"
fi
btrfs quota rescan -W "$root"
if [ -n "$limit" ]; then
  told=$(numfmt --from=iec "$limit")
  headroom=$((told / 100))
  [ "$headroom" -ge 67108864 ] || headroom=67108864
  btrfs qgroup limit "$((told + headroom))" "$new"
fi
mv "$dir" "$old"
mv "$new" "$dir"
trap - EXIT
echo "migrate: $dir is a subvolume${limit:+ with a quota of $limit (limit $((told + headroom)) bytes)}; the original is $old"
restart
echo "migrate: now run pulumi up --refresh; remove $old once the Mac has backed up again"
