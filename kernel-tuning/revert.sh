#!/usr/bin/env bash
# revert.sh FILE: undo what kernel-tuning/apply.sh did, from the state file it named.
#
# Restores every sysctl value saved in FILE (with sysctl -w), removes the lo addresses apply.sh
# added, and removes /etc/sysctl.d/90-mcpstorm.conf if apply.sh wrote it (or puts back the
# file that was there before). Then marks FILE as reverted; running again does nothing.
# Run it in the network namespace apply.sh ran in: net.* keys are per namespace.
set -euo pipefail

usage() {
    echo "usage: revert.sh STATE_FILE   (the file apply.sh printed, e.g. /var/lib/mcpstorm/kernel-tuning.state)"
}

die() {
    echo "revert.sh: $*" >&2
    exit 2
}

case ${1:-} in
    -h | --help) usage; exit 0 ;;
esac
if [ $# -ne 1 ] || [ -z "$1" ]; then
    usage >&2
    exit 2
fi
state_file=$1

if ((EUID != 0)); then
    echo "revert.sh: must run as root: it restores kernel settings with sysctl -w (and removes" \
        "what apply.sh added to lo and /etc/sysctl.d). Run it with sudo." >&2
    exit 1
fi
[ -f "$state_file" ] || die "no state file $state_file (apply.sh prints the path it saved to)"
awk -F'\t' '$1 == "version" && $2 == "1" { ok = 1 } END { exit !ok }' "$state_file" ||
    die "$state_file is not a state file written by apply.sh"

reverted_at=$(awk -F'\t' '$1 == "reverted" { print $2; exit }' "$state_file")
if [ -n "$reverted_at" ]; then
    echo "$state_file was already reverted at $reverted_at: nothing to do"
    exit 0
fi

netns_id=$(readlink /proc/self/ns/net 2>/dev/null || echo unknown)
recorded_netns=$(awk -F'\t' '$1 == "netns" { print $2; exit }' "$state_file")
if [ "$recorded_netns" != "$netns_id" ]; then
    die "$state_file was written in network namespace $recorded_netns, you are in $netns_id:" \
        "net.* values are per namespace, so run revert.sh there (e.g. ip netns exec NAME bash revert.sh FILE)"
fi

read_key() {
    local path=/proc/sys/${1//.//}
    local -a vals
    [ -r "$path" ] || return 1
    read -r -a vals <"$path" || true
    echo "${vals[*]}"
}

restored=0 failed=0
sysctl_lines=()
alias_lines=()
persist_lines=()
while IFS=$'\t' read -r kind a b; do
    case $kind in
        sysctl) sysctl_lines+=("$a"$'\t'"$b") ;;
        alias) alias_lines+=("$a"$'\t'"$b") ;;
        persist) persist_lines+=("$a"$'\t'"$b") ;;
    esac
done <"$state_file"

for line in "${sysctl_lines[@]}"; do
    key=${line%%$'\t'*}
    saved=${line#*$'\t'}
    if ! [[ $key =~ ^[a-z0-9_]+(\.[a-z0-9_-]+)+$ ]] || ! [[ $saved =~ ^[0-9]+(\ [0-9]+)*$ ]]; then
        echo "skip    malformed line for \"$key\" = \"$saved\" (not a key and a number list)" >&2
        failed=$((failed + 1))
        continue
    fi
    if ! now=$(read_key "$key"); then
        echo "skip    $key: not present here any more; cannot restore $saved"
        continue
    fi
    if [ "$now" = "$saved" ]; then
        echo "ok      $key: $now"
    elif sysctl -q -w "$key=$saved" >/dev/null; then
        echo "restore $key: $now → $saved"
        restored=$((restored + 1))
    else
        echo "FAILED  sysctl -w $key=\"$saved\" (now $now)" >&2
        failed=$((failed + 1))
    fi
done

for line in "${alias_lines[@]}"; do
    addr=${line%%$'\t'*}
    dev=${line#*$'\t'}
    if ! [[ $addr =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/32$ ]] || [ "$dev" != lo ]; then
        echo "skip    malformed alias line \"$addr\" on \"$dev\" (apply.sh only adds ADDR/32 on lo)" >&2
        failed=$((failed + 1))
        continue
    fi
    command -v ip >/dev/null || die "removing $addr from lo needs the ip command (iproute2)"
    if ip -o -4 addr show dev lo | grep -q " inet ${addr//./\\.} "; then
        if ip addr del "$addr" dev lo; then
            echo "remove  alias $addr from lo"
            restored=$((restored + 1))
        else
            echo "FAILED  ip addr del $addr dev lo" >&2
            failed=$((failed + 1))
        fi
    else
        echo "ok      alias $addr: not on lo"
    fi
done

for line in "${persist_lines[@]}"; do
    path=${line%%$'\t'*}
    backup=${line#*$'\t'}
    # Only ever the file apply.sh writes, and the backup it made next to the state file.
    if [[ $path != */90-mcpstorm.conf ]] || { [ "$backup" != - ] && [[ $backup != *.orig-90-mcpstorm.conf ]]; }; then
        echo "skip    malformed persist line \"$path\" \"$backup\"" >&2
        failed=$((failed + 1))
        continue
    fi
    if [ "$backup" = - ]; then
        if [ -e "$path" ]; then
            rm -f "$path"
            echo "remove  $path"
            restored=$((restored + 1))
        else
            echo "ok      $path: absent"
        fi
    elif [ -f "$backup" ]; then
        cp -p "$backup" "$path"
        rm -f "$backup"
        echo "restore $path: the file that was there before apply.sh"
        restored=$((restored + 1))
    else
        echo "ok      $path: its earlier version was put back already"
    fi
done

if ((failed)); then
    echo "revert.sh: $failed item(s) could not be restored; restored $restored. Fix and run again:" \
        "$state_file is not marked reverted" >&2
    exit 1
fi
printf 'reverted\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$state_file"
echo "restored $restored item(s) from $state_file (now marked reverted)"
