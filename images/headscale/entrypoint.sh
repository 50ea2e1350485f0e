#!/bin/sh
# Writes Headscale's config from the environment (the stack's way in: the root filesystem is
# read-only and /etc/headscale a tmpfs), then runs the command (headscale serve). The policy is
# on the state volume, written by the stack into the running container. A file already there (a
# container made without the variable) is used as it is.
#
# Before `headscale serve` opens a database another release used last (an upgrade: the stack
# replaces the container with one of the next release), a copy of the database is kept on the
# volume, named by that release (upgrade-backups/<version>/), and a step that skips a minor version
# or goes back one is refused: Headscale migrates the database on start and cannot go back.
set -eu
# The directories are Headscale's own (the image's); a test of this script gives others.
config_dir=${HEADSCALE_CONFIG_DIR:-/etc/headscale}
state=${HEADSCALE_STATE_DIR:-/var/lib/headscale}
if [ -n "${HEADSCALE_CONFIG_YAML:-}" ]; then printf '%s\n' "$HEADSCALE_CONFIG_YAML" >"$config_dir/config.yaml"; fi

marker="$state/headscale-version"
case "$*" in
*"headscale serve"*)
	if [ -f "$state/db.sqlite" ] && [ -n "${HEADSCALE_VERSION:-}" ]; then
		# A volume from before the marker was written by the only release embedded until then.
		last=$(cat "$marker" 2>/dev/null || echo v0.27.1)
		if [ "$last" != "$HEADSCALE_VERSION" ]; then
			part() { echo "$1" | sed -n "s/^v\{0,1\}\([0-9][0-9]*\)\.\([0-9][0-9]*\)\.[0-9].*/\\$2/p"; }
			old_major=$(part "$last" 1) old_minor=$(part "$last" 2)
			new_major=$(part "$HEADSCALE_VERSION" 1) new_minor=$(part "$HEADSCALE_VERSION" 2)
			if [ -z "$old_minor" ] || [ -z "$new_minor" ] || [ "$new_major" != "$old_major" ] ||
				[ "$new_minor" -gt $((old_minor + 1)) ] || [ "$new_minor" -lt "$old_minor" ]; then
				echo "headscale $HEADSCALE_VERSION refuses the database last used by $last: Headscale upgrades one" \
					"minor version at a time and never goes back; set tailnet.headscale.version to the next minor" \
					"release after $last (docs/operations.md, upgrading Headscale)" >&2
				exit 78
			fi
			backup="$state/upgrade-backups/$last"
			if [ ! -e "$backup/db.sqlite" ]; then
				rm -rf "$backup.partial" && mkdir -p "$backup.partial"
				# The old container has stopped: the database and its write-ahead log are at rest.
				for file in db.sqlite db.sqlite-wal db.sqlite-shm; do
					if [ -f "$state/$file" ]; then cp -p "$state/$file" "$backup.partial/$file"; fi
				done
				rm -rf "$backup" && mv "$backup.partial" "$backup"
				echo "kept a copy of the database of headscale $last in $backup before $HEADSCALE_VERSION opens it" >&2
			fi
		fi
	fi
	if [ -n "${HEADSCALE_VERSION:-}" ]; then printf '%s\n' "$HEADSCALE_VERSION" >"$marker.new" && mv "$marker.new" "$marker"; fi
	;;
esac
exec "$@"
