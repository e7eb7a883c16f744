#!/usr/bin/env bash
# apply.sh: raise the kernel limits mcpstorm meets at N connections, saving every value it
# changes so that revert.sh can put it back.
#
#   apply.sh [--connections N] [--dry-run] [--persist] [--source-ips LIST] [--alias LIST]
#            [--state-file FILE] [--sockets-per-connection 1|2]
#
# Never lowers a limit that is already higher than N needs, so a second run changes nothing.
# The formulas are the ones mcpstorm.sysctl.conf explains line by line (that file is this
# script's output for N = 1,000,000). With N connections and S = N × sockets-per-connection
# (2 by default: client and server on one host, each connection is two sockets here), R =
# 60,000 connects/s (measured, ARCHITECTURE.md) and K source addresses (--source-ips; 1 if none):
#
#   fs.file-max                    ≥ S + S/4
#   fs.nr_open                     ≥ next_pow2(S + 1024)
#   net.ipv4.ip_local_port_range   at least P = ceil(N / K) ports; the widest is 1024-65535
#                                  (64,512 ports): range = [65536 - P rounded down to even, 65535]
#   net.core.somaxconn             ≥ next_pow2(min(N, R × 1 s))
#   net.ipv4.tcp_max_syn_backlog   ≥ next_pow2(min(N, R × 1 s))
#   net.core.netdev_max_backlog    ≥ next_pow2(min(3 × N, 3 × R × 0.1 s))
#   net.ipv4.tcp_mem (pages)       ≥ (3/4 × M, M, 3/2 × M), M = S × ceil(3,900 B / 4,096 B) = S
#   net.ipv4.tcp_rmem, tcp_wmem    minimum ≤ 4096 (default and max left alone)
#   net.ipv4.tcp_tw_reuse          = 1
#   net.ipv4.tcp_max_tw_buckets    ≥ S
#   net.ipv4.tcp_max_orphans       ≥ S
#   net.ipv4.tcp_fin_timeout       ≤ 15
#   net.netfilter.nf_conntrack_max ≥ 2 × N (only when nf_conntrack is loaded)
#   kernel.io_uring_disabled       = 0
#
# Keys this kernel (or this network namespace) lacks, or holds read-only, are skipped and named.
# The old values go to a state file (default /var/lib/mcpstorm/kernel-tuning.state, or
# $TMPDIR/mcpstorm-kernel-tuning.state when /var/lib is not writable); running again with the
# same file adds to it and keeps the first saved values. --persist also writes
# /etc/sysctl.d/90-mcpstorm.conf ($MCPSTORM_SYSCTL_D overrides the directory, for tests).
# --alias puts extra source addresses on lo (ADDR/32; never on any other interface).
set -euo pipefail

readonly CONNECT_RATE=60000
readonly PAGE_BYTES=4096
readonly KERNEL_BYTES_PER_SOCKET=3900
readonly PERSIST_DIR="${MCPSTORM_SYSCTL_D:-/etc/sysctl.d}"
readonly PERSIST_FILE="$PERSIST_DIR/90-mcpstorm.conf"

usage() {
    cat <<'EOF'
usage: apply.sh [options]
  --connections N            connections to plan for (default 1000000; 100k and 1m work too)
  --sockets-per-connection S 2 when the target runs on this host (default), 1 when it is remote
  --source-ips LIST          source addresses mcpstorm will bind (127.0.0.2-127.0.0.9,10.0.0.5):
                             spreads the ports over them and checks they are local
  --alias LIST               add these non-127 addresses to lo as ADDR/32 (revert.sh removes them)
  --state-file FILE          where to save the old values (default /var/lib/mcpstorm/...)
  --persist                  also write /etc/sysctl.d/90-mcpstorm.conf
  --dry-run                  print the plan only; reads, writes nothing, needs no root
  -h, --help                 this text
EOF
}

die() {
    echo "apply.sh: $*" >&2
    exit 2
}

# "100000", "100k", "1m" → digits.
parse_count() {
    local text=${1,,} mult=1
    case $text in
        *k) mult=1000; text=${text%k} ;;
        *m) mult=1000000; text=${text%m} ;;
    esac
    [[ $text =~ ^[0-9]+$ ]] || die "$2: \"$1\" is not a count (e.g. 100000, 100k, 1m)"
    text=$((10#$text * mult))
    ((text >= 1 && text <= 100000000)) || die "$2: $text is outside 1..100,000,000"
    echo "$text"
}

ip_to_int() {
    local a b c d
    [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
    a=$((10#${BASH_REMATCH[1]})) b=$((10#${BASH_REMATCH[2]}))
    c=$((10#${BASH_REMATCH[3]})) d=$((10#${BASH_REMATCH[4]}))
    ((a <= 255 && b <= 255 && c <= 255 && d <= 255)) || return 1
    echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

int_to_ip() {
    echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"
}

# "127.0.0.2-127.0.0.9,10.0.0.5" → one address per line (the syntax of mcpstorm --source-ips).
expand_ips() {
    local list=$1 what=$2 part first last i
    local -a parts
    IFS=',' read -r -a parts <<<"$list"
    for part in "${parts[@]}"; do
        part=${part//[[:space:]]/}
        [ -n "$part" ] || continue
        if [[ $part == *-* ]]; then
            first=$(ip_to_int "${part%%-*}") || die "$what: \"${part%%-*}\" is not an IPv4 address"
            last=$(ip_to_int "${part#*-}") || die "$what: \"${part#*-}\" is not an IPv4 address"
            ((last >= first && last - first <= 65535)) || die "$what: bad range \"$part\""
            for ((i = first; i <= last; i++)); do int_to_ip "$i"; done
        else
            first=$(ip_to_int "$part") || die "$what: \"$part\" is not an IPv4 address"
            int_to_ip "$first"
        fi
    done
}

next_pow2() {
    local p=1
    while ((p < $1)); do p=$((p * 2)); done
    echo "$p"
}

min() { if (($1 < $2)); then echo "$1"; else echo "$2"; fi; }
max() { if (($1 > $2)); then echo "$1"; else echo "$2"; fi; }

connections=1000000
sockets_per_connection=2
dry_run=0
persist=0
source_ips=""
alias_list=""
state_file=""

value_of() { # OPTION ARGS...: the option's value, or stop
    if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi
    echo "$2"
}
while (($#)); do
    case $1 in
        --connections)
            connections=$(value_of "$@")
            connections=$(parse_count "$connections" --connections)
            shift 2
            ;;
        --connections=*) connections=$(parse_count "${1#*=}" --connections); shift ;;
        --sockets-per-connection) sockets_per_connection=$(value_of "$@"); shift 2 ;;
        --sockets-per-connection=*) sockets_per_connection=${1#*=}; shift ;;
        --source-ips) source_ips=$(value_of "$@"); shift 2 ;;
        --source-ips=*) source_ips=${1#*=}; shift ;;
        --alias) alias_list="$alias_list,$(value_of "$@")"; shift 2 ;;
        --alias=*) alias_list="$alias_list,${1#*=}"; shift ;;
        --state-file) state_file=$(value_of "$@"); shift 2 ;;
        --state-file=*) state_file=${1#*=}; shift ;;
        --persist) persist=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument \"$1\"" ;;
    esac
done
[[ $sockets_per_connection =~ ^[12]$ ]] || die "--sockets-per-connection must be 1 or 2"

if ((!dry_run)) && ((EUID != 0)); then
    echo "apply.sh: must run as root: it changes kernel settings with sysctl -w (and, if asked," \
        "writes /etc/sysctl.d and adds addresses to lo). Run it with sudo, or add --dry-run to" \
        "print the plan without changing anything." >&2
    exit 1
fi
if ((!dry_run)); then
    command -v sysctl >/dev/null || die "sysctl not found (Debian: apt-get install procps)"
fi

# --- addresses ------------------------------------------------------------------------------
# (Expanded in a command substitution first, so that a bad address stops the script.)
source_addrs=()
alias_addrs=()
if [ -n "$source_ips" ]; then
    text=$(expand_ips "$source_ips" --source-ips)
    [ -n "$text" ] || die "--source-ips: no address given"
    mapfile -t source_addrs <<<"$text"
fi
if [ -n "$alias_list" ]; then
    text=$(expand_ips "$alias_list" --alias)
    [ -n "$text" ] || die "--alias: no address given"
    mapfile -t alias_addrs <<<"$text"
fi
sources=${#source_addrs[@]}
((sources > 0)) || sources=1

# --- the formulas ---------------------------------------------------------------------------
N=$connections
S=$((N * sockets_per_connection))
need_file_max=$((S + S / 4))
need_nr_open=$(next_pow2 $((S + 1024)))
ports_per_source=$(((N + sources - 1) / sources))
if ((ports_per_source > 64512)); then
    need_port_low=1024
else
    need_port_low=$((65536 - ports_per_source))
    need_port_low=$((need_port_low - need_port_low % 2))
fi
need_port_high=65535
need_backlog=$(next_pow2 "$(min "$N" "$CONNECT_RATE")")
need_netdev=$(next_pow2 "$(min $((3 * N)) $((3 * CONNECT_RATE / 10)))")
pages_per_socket=$(((KERNEL_BYTES_PER_SOCKET + PAGE_BYTES - 1) / PAGE_BYTES))
tcp_pressure=$((S * pages_per_socket))
need_tcp_mem="$((tcp_pressure * 3 / 4)) $tcp_pressure $((tcp_pressure * 3 / 2))"
need_conntrack=$((2 * N))

# One row per key: KEY, RULE, NEED, WHY. Rules: ge (raise to at least), ge3 (each of three
# raised), le (lower to at most), eq (exactly), minle (first of three lowered to at most),
# range (widen to at least NEED's ports).
keys=() rules=() needs=() whys=()
row() { keys+=("$1"); rules+=("$2"); needs+=("$3"); whys+=("$4"); }
row fs.file-max ge "$need_file_max" \
    "S + S/4 = $S + $((S / 4)) (every socket is a file, direct descriptors too; 25% for the rest)"
row fs.nr_open ge "$need_nr_open" \
    "next_pow2(S + 1024) = next_pow2($((S + 1024))) (one process may hold every socket)"
row net.ipv4.ip_local_port_range range "$need_port_low $need_port_high" \
    "P = ceil(N / K) = ceil($N / $sources) = $ports_per_source ports per source address (widest: 64512)"
row net.core.somaxconn ge "$need_backlog" \
    "next_pow2(min(N, R × 1 s)) = next_pow2(min($N, $CONNECT_RATE)) (a 1 s accept stall loses nothing)"
row net.ipv4.tcp_max_syn_backlog ge "$need_backlog" \
    "next_pow2(min(N, R × 1 s)) = next_pow2(min($N, $CONNECT_RATE)) (1 s of SYNs at R)"
row net.core.netdev_max_backlog ge "$need_netdev" \
    "next_pow2(min(3N, 3 × R × 0.1 s)) = next_pow2(min($((3 * N)), $((3 * CONNECT_RATE / 10)))) (100 ms of handshake packets)"
row net.ipv4.tcp_mem ge3 "$need_tcp_mem" \
    "pages: M = S × 1 page (3.9 KB/socket rounds up to 4 KiB) = $tcp_pressure; 3M/4, M, 3M/2 (kernel's 3:4:6)"
row net.ipv4.tcp_rmem minle "4096" "minimum one page, so sockets under memory pressure keep little"
row net.ipv4.tcp_wmem minle "4096" "minimum one page, so sockets under memory pressure keep little"
row net.ipv4.tcp_tw_reuse eq "1" "reuse TIME_WAIT 4-tuples for every destination (2 = loopback only)"
row net.ipv4.tcp_max_tw_buckets ge "$S" "S = $S (both ends may close all N within one 60 s TIME_WAIT)"
row net.ipv4.tcp_max_orphans ge "$S" "S = $S (cool_down closes every socket at once)"
row net.ipv4.tcp_fin_timeout le "15" "orphans wait ≤ 15 s in FIN_WAIT_2, not 60"
row net.netfilter.nf_conntrack_max ge "$need_conntrack" \
    "2 × N = $need_conntrack (live flows + closed ones in conntrack TIME_WAIT for 120 s)"
row kernel.io_uring_disabled eq "0" "mcpstorm is io_uring only"

# --- where we are ---------------------------------------------------------------------------
netns_id=$(readlink /proc/self/ns/net 2>/dev/null || echo unknown)
init_netns_id=$(readlink /proc/1/ns/net 2>/dev/null || echo unknown)
in_child_netns=0
if [ "$init_netns_id" != unknown ]; then
    if [ "$netns_id" != "$init_netns_id" ]; then in_child_netns=1; fi
elif [ -d /proc/sys/net/core ] && [ ! -e /proc/sys/net/core/netdev_max_backlog ]; then
    # /proc/1 is not always readable (containers); the initial namespace alone has this key.
    in_child_netns=1
fi

read_key() { # KEY → value with single spaces, or nothing when absent
    local path=/proc/sys/${1//.//}
    local -a vals
    [ -r "$path" ] || return 1
    read -r -a vals <"$path" || true
    echo "${vals[*]}"
}

# Sets CUR, TARGET and STATUS (change|ok|skip; REASON when skip) for row $1.
evaluate() {
    local i=$1 key=${keys[$1]} need=${needs[$1]} path mode
    local -a c n
    path=/proc/sys/${key//.//}
    CUR="" TARGET="" REASON=""
    if [ ! -e "$path" ]; then
        STATUS=skip
        if [[ $key == net.netfilter.nf_conntrack_* ]]; then
            REASON="nf_conntrack is not loaded: nothing to track, nothing to tune"
        elif [[ $key == net.* ]] && ((in_child_netns)); then
            REASON="absent in this network namespace (a global key: only the initial namespace has it)"
        else
            REASON="not present on this kernel"
        fi
        return
    fi
    CUR=$(read_key "$key") || { STATUS=skip; REASON="not readable"; return; }
    mode=$(stat -L -c %A "$path")
    if [ "${mode:2:1}" != w ]; then
        STATUS=skip
        if ((in_child_netns)); then
            REASON="read-only in this network namespace (global: set it from the initial namespace); now $CUR"
        else
            REASON="read-only on this kernel; now $CUR"
        fi
        return
    fi
    read -r -a c <<<"$CUR"
    read -r -a n <<<"$need"
    case ${rules[$i]} in
        ge) TARGET=$(max "${c[0]}" "${n[0]}") ;;
        le) TARGET=$(min "${c[0]}" "${n[0]}") ;;
        eq) TARGET=${n[0]} ;;
        ge3) TARGET="$(max "${c[0]}" "${n[0]}") $(max "${c[1]}" "${n[1]}") $(max "${c[2]}" "${n[2]}")" ;;
        minle) TARGET="$(min "${c[0]}" "${n[0]}") ${c[1]} ${c[2]}" ;;
        range)
            if ((c[1] - c[0] + 1 >= ports_per_source || c[0] <= n[0] && c[1] >= n[1])); then
                TARGET=$CUR
            else
                TARGET="$(min "${c[0]}" "${n[0]}") $(max "${c[1]}" "${n[1]}")"
            fi
            ;;
    esac
    if [ "$TARGET" = "$CUR" ]; then STATUS=ok; else STATUS=change; fi
}

need_text() { # how row $1's need reads in the plan
    local need=${needs[$1]}
    case ${rules[$1]} in
        ge | ge3) echo "≥ $need" ;;
        le) echo "≤ $need" ;;
        eq) echo "= $need" ;;
        minle) echo "min ≤ $need" ;;
        range) echo "≥ $ports_per_source ports: $need" ;;
    esac
}

default_state_file() {
    if [ -d /var/lib/mcpstorm ] && [ -w /var/lib/mcpstorm ]; then
        echo /var/lib/mcpstorm/kernel-tuning.state
    elif [ ! -e /var/lib/mcpstorm ] && [ -w /var/lib ]; then
        echo /var/lib/mcpstorm/kernel-tuning.state
    else
        echo "${TMPDIR:-/tmp}/mcpstorm-kernel-tuning.state"
    fi
}
if [ -z "$state_file" ]; then state_file=$(default_state_file); fi

state_has() { # KIND [NAME]: is such a line recorded?
    [ -f "$state_file" ] && awk -F'\t' -v k="$1" -v n="${2:-}" \
        '$1 == k && (n == "" || $2 == n) { found = 1 } END { exit !found }' "$state_file"
}

echo "mcpstorm kernel tuning for N = $N connections: S = $S sockets on this host" \
    "($sockets_per_connection per connection), R = $CONNECT_RATE connects/s, K = $sources source address(es)"
if ((in_child_netns)); then
    echo "note: running in network namespace $netns_id, not the initial one: net.* keys change" \
        "here only, but fs.*, kernel.* and vm.* keys are global and change for the whole host"
fi
if ((dry_run)); then
    echo "dry run: nothing will be written (state file would be $state_file)"
fi

# --- state file -----------------------------------------------------------------------------
if ((!dry_run)); then
    if [ -f "$state_file" ] && ! state_has reverted; then
        recorded_netns=$(awk -F'\t' '$1 == "netns" { print $2 }' "$state_file")
        [ "$recorded_netns" = "$netns_id" ] ||
            die "state file $state_file holds values saved in network namespace $recorded_netns" \
                "(you are in $netns_id) and is not reverted yet: run revert.sh there, or pass --state-file"
        echo "state file: $state_file (adding to the values an earlier run saved; those are kept)"
    else
        mkdir -p "$(dirname "$state_file")"
        (
            umask 077
            {
                echo "# mcpstorm kernel-tuning state: values as they were before apply.sh changed them."
                echo "# Restore with: bash kernel-tuning/revert.sh $state_file"
                printf 'version\t1\n'
                printf 'netns\t%s\n' "$netns_id"
                printf 'created\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
            } >"$state_file"
        )
        echo "state file: $state_file"
    fi
fi

# --- sysctls --------------------------------------------------------------------------------
changed=0 failed=0 skipped=0
for i in "${!keys[@]}"; do
    key=${keys[$i]}
    evaluate "$i"
    case $STATUS in
        skip)
            printf 'skip   %s: %s\n' "$key" "$REASON"
            skipped=$((skipped + 1))
            ;;
        ok)
            printf 'ok     %s: %s (need %s)\n' "$key" "$CUR" "$(need_text "$i")"
            ;;
        change)
            printf 'change %s: %s → %s (need %s)\n' "$key" "$CUR" "$TARGET" "$(need_text "$i")"
            if ((!dry_run)); then
                if ! state_has sysctl "$key"; then
                    printf 'sysctl\t%s\t%s\n' "$key" "$CUR" >>"$state_file"
                fi
                if ! sysctl -q -w "$key=$TARGET" >/dev/null; then
                    echo "       FAILED: sysctl -w $key=\"$TARGET\"" >&2
                    failed=$((failed + 1))
                    continue
                fi
                now=$(read_key "$key")
                if [ "$now" != "$TARGET" ]; then
                    echo "       note: the kernel kept $now"
                fi
            fi
            changed=$((changed + 1))
            ;;
    esac
    printf '       %s\n' "${whys[$i]}"
done

# --- addresses ------------------------------------------------------------------------------
have_ip=0
if command -v ip >/dev/null; then have_ip=1; fi
addr_is_local() { # ADDR: assigned to some interface of this namespace?
    [ -n "$(ip -o -4 addr show to "$1/32" 2>/dev/null)" ]
}
if [ -n "$source_ips" ] || [ -n "$alias_list" ]; then
    loopbacks=0
    others=()
    for a in "${source_addrs[@]}" "${alias_addrs[@]}"; do
        if [[ $a == 127.* ]]; then loopbacks=$((loopbacks + 1)); fi
    done
    if ((loopbacks)); then
        echo "addresses: 127.0.0.0/8 already routes on lo on Linux (the local route that" \
            "comes with 127.0.0.1/8): the $loopbacks 127.x address(es) need nothing added"
        if ((have_ip)) && ! ip -o link show lo 2>/dev/null | grep -q '[<,]UP[,>]'; then
            echo "warning: lo is down in this network namespace: 127.x addresses work only after" \
                "\`ip link set lo up\`"
        fi
    fi
    for a in "${source_addrs[@]}"; do
        [[ $a == 127.* ]] && continue
        if ((have_ip)) && ! addr_is_local "$a" && [[ ",$alias_list," != *",$a,"* ]]; then
            others+=("$a")
        fi
    done
    if ((${#others[@]})); then
        echo "warning: ${#others[@]} source address(es) are not local here (first: ${others[0]}):" \
            "bind() will fail with EADDRNOTAVAIL; add them to lo with --alias ${others[0]}"
    fi
fi
if ((${#alias_addrs[@]})); then
    ((have_ip)) || die "--alias needs the ip command (Debian: apt-get install iproute2)"
    for a in "${alias_addrs[@]}"; do
        if [[ $a == 127.* ]]; then
            echo "ok     alias $a: in 127.0.0.0/8, which lo already has: nothing to add"
            continue
        fi
        first_octet=${a%%.*}
        if [ "$a" = 0.0.0.0 ] || ((first_octet >= 224)); then
            die "--alias: $a is not a unicast address"
        fi
        if addr_is_local "$a"; then
            echo "ok     alias $a: already an address of this host ($(ip -o -4 addr show to "$a/32" | awk '{ print $2; exit }'))"
            continue
        fi
        echo "change alias $a/32 on lo: ip addr add $a/32 dev lo"
        if ((!dry_run)); then
            if ! state_has alias "$a/32"; then printf 'alias\t%s/32\tlo\n' "$a" >>"$state_file"; fi
            ip addr add "$a/32" dev lo
        fi
        changed=$((changed + 1))
    done
fi

# --- persist --------------------------------------------------------------------------------
if ((persist)); then
    if ((dry_run)); then
        echo "persist: would write $PERSIST_FILE with every key this tuning changed"
    else
        if ! state_has persist; then
            backup=-
            if [ -e "$PERSIST_FILE" ]; then
                backup="$state_file.orig-90-mcpstorm.conf"
                cp -p "$PERSIST_FILE" "$backup"
            fi
            printf 'persist\t%s\t%s\n' "$PERSIST_FILE" "$backup" >>"$state_file"
        fi
        mkdir -p "$PERSIST_DIR"
        tmp="$PERSIST_FILE.tmp.$$"
        {
            echo "# Written by mcpstorm kernel-tuning/apply.sh --connections $N; undo with revert.sh $state_file"
            echo "# The formulas and why: kernel-tuning/mcpstorm.sysctl.conf. \"-\": skipped if the key is absent."
            awk -F'\t' '$1 == "sysctl" { print $2 }' "$state_file" | while read -r key; do
                if value=$(read_key "$key"); then echo "-$key = $value"; fi
            done
        } >"$tmp"
        mv -f "$tmp" "$PERSIST_FILE"
        echo "persist: wrote $PERSIST_FILE (applied at boot by systemd-sysctl / sysctl --system)"
    fi
fi

# --- what the kernel cannot lift ------------------------------------------------------------
mem_available_kb=$(awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo 2>/dev/null || true)
slab_mib=$((S * KERNEL_BYTES_PER_SOCKET / 1048576))
if [ -n "$mem_available_kb" ]; then
    avail_mib=$((mem_available_kb / 1024))
    verdict=ok
    if ((slab_mib * 10 > avail_mib * 9)); then verdict=WARNING; fi
    echo "memory ($verdict): S × 3.9 KB = $slab_mib MiB of kernel memory for the sockets alone; MemAvailable $avail_mib MiB"
fi
if ((ports_per_source > 64512)); then
    k_needed=$(((N + 64511) / 64512))
    echo "WARNING: $N connections to one target need $k_needed source addresses (64,512 ports each" \
        "at most): pass mcpstorm --source-ips 127.0.0.2-127.0.0.$((k_needed + 1))" \
        "(and --source-ips to this script) or spread the load over more target ports"
fi
echo "RLIMIT_NOFILE is per process, not a sysctl (hard limit now $(ulimit -Hn) here): raise it where" \
    "mcpstorm runs, up to fs.nr_open: ulimit -Hn $need_nr_open, LimitNOFILE=$need_nr_open, or" \
    "'* hard nofile $need_nr_open' in /etc/security/limits.conf"

if ((dry_run)); then
    echo "dry run: would change $changed setting(s), skip $skipped; nothing written"
elif ((failed)); then
    echo "apply.sh: $failed setting(s) could not be written; changed $changed. Undo the rest with:" \
        "bash $(dirname "$0")/revert.sh $state_file" >&2
    exit 1
else
    echo "changed $changed setting(s), skipped $skipped; old values saved in $state_file"
    echo "undo with: bash $(dirname "$0")/revert.sh $state_file"
fi
