#!/bin/sh
# Refuses a Samba that breaks Time Machine: anything before 4.22.6, and 4.23.0-4.23.2 (Samba bug
# 15926: a rename of a directory with files open below it, which Time Machine does to its
# sparsebundle, fails from 4.22.0; fixed in 4.22.6 and 4.23.3). The image build runs it on its own
# smbd; tests/unit/test_samba_version.py runs it on version strings.
#
#   samba-version.sh "Version 4.22.11-Debian-4.22.11+dfsg-0+deb13u1"   exit 0: usable
#                                                                     exit 1: refused (says why)
#                                                                     exit 2: not a version
set -eu

# One version string as smbd --version prints it ("Version 4.22.11-Debian-…"); prints
# "major minor patch", or nothing when there is no x.y.z in it. A release candidate
# (4.23.0rc1) counts as its x.y.0.
samba_version_parts() {
  printf '%s\n' "$1" | sed -n 's/^[^0-9]*\([0-9][0-9]*\)\.\([0-9][0-9]*\)\.\([0-9][0-9]*\).*$/\1 \2 \3/p'
}

# Exit status 0 when the version may serve Time Machine, 1 when it may not, 2 when it is no version.
samba_version_ok() {
  parts=$(samba_version_parts "$1")
  [ -n "$parts" ] || return 2
  # shellcheck disable=SC2086 # three numbers, split on purpose
  set -- $parts
  major=$1 minor=$2 patch=$3
  if [ "$major" -ne 4 ]; then [ "$major" -gt 4 ]; return; fi
  if [ "$minor" -lt 22 ]; then return 1; fi
  if [ "$minor" -eq 22 ]; then [ "$patch" -ge 6 ]; return; fi
  if [ "$minor" -eq 23 ]; then [ "$patch" -ge 3 ]; return; fi
  return 0
}

version="${1:-}"
status=0
samba_version_ok "$version" || status=$?
case "$status" in
  0) echo "samba-version: $version: usable for Time Machine" ;;
  1) echo "samba-version: $version: refused: Time Machine needs Samba 4.22.6 or later, and not" \
       "4.23.0-4.23.2 (Samba bug 15926: renames of open files fail from 4.22.0, fixed in 4.22.6 and 4.23.3)" >&2 ;;
  *) echo "samba-version: '$version' is not a Samba version (x.y.z)" >&2 ;;
esac
exit "$status"
