#!/usr/bin/env bash
# Put every rig on this Pi in its safe state (BOOT0 low, NRST released, power as configured):
# `bootproof rig safe` for each rig config in /etc/bootproof/*.toml.
#
# bootproof restores the safe state itself on every exit it can see. A SIGKILL, an OOM kill, a
# runner crash or a cancelled job that outlives its grace period cannot be seen: the relays keep
# whatever state they had, and the 10 s NRST auto-release dies with the process. This script
# closes that gap. It runs
#   * after every GitHub Actions job, as the runner's job-completed hook
#     (ACTIONS_RUNNER_HOOK_JOB_COMPLETED=/usr/local/libexec/bootproof/job-completed.sh in the
#     runner's .env);
#   * when the runner service stops, crashes or is killed (ExecStopPost= in
#     ci/systemd/actions-runner.service.d/bootproof-safe.conf);
#   * at boot and shutdown (ci/systemd/bootproof-safe.service).
# Install it outside the runner's directory, owned by root (see ci/README.md).
#
# Settings (environment; in the runner's .env, or /etc/bootproof/safe.env for the units):
#   BOOTPROOF_BIN                  the bootproof binary (default: /usr/local/bin/bootproof, then
#                                  ~/.cargo/bin/bootproof, then bootproof on PATH)
#   BOOTPROOF_SAFE_RIGS            rig configs, space-separated paths or globs
#                                  (default: /etc/bootproof/*.toml)
#   BOOTPROOF_SAFE_LOCK_TIMEOUT_S  how long to wait for a rig another process still holds, e.g. a
#                                  bootproof finishing its own SIGTERM handling (default: 60)
#   BOOTPROOF_SAFE_STRICT          1 (default): exit 1 when a rig could not be made safe, which
#                                  fails the job and names the rig; 0: report it and exit 0
#
# The runner starts hooks as `bash -e FILE`: every command that may fail is tested explicitly.
set -u
shopt -s nullglob

lock_timeout=${BOOTPROOF_SAFE_LOCK_TIMEOUT_S:-60}
strict=${BOOTPROOF_SAFE_STRICT:-1}
rig_patterns=${BOOTPROOF_SAFE_RIGS:-/etc/bootproof/*.toml}
in_job=${GITHUB_ACTIONS:-}
# Plain text in the job log and the journal (bootproof's log lines are coloured otherwise).
export NO_COLOR=1

# One line to the job log (or the journal, under systemd) and, from a job, to the journal too.
log() {
    printf 'bootproof-safe: %s\n' "$*"
    if [ -n "$in_job" ] && command -v logger >/dev/null 2>&1; then
        logger -t bootproof-safe -- "$*" || true
    fi
}
# Escapes for workflow commands: the message, and a property value (which also escapes : ,).
esc_data() {
    local s=${1//%/%25}
    s=${s//$'\r'/%0D}
    printf '%s' "${s//$'\n'/%0A}"
}
esc_prop() {
    local s
    s=$(esc_data "$1")
    s=${s//:/%3A}
    printf '%s' "${s//,/%2C}"
}
# A problem: an annotation on the job (workflow command) and a log line.
problem() {
    local level=$1 title=$2 msg=$3
    if [ -n "$in_job" ]; then
        printf '::%s title=%s::%s\n' "$level" "$(esc_prop "$title")" "$(esc_data "$msg")"
    fi
    log "$level: $title: $msg"
}

find_bootproof() {
    local c
    for c in "${BOOTPROOF_BIN:-}" /usr/local/bin/bootproof "${HOME:-/nonexistent}/.cargo/bin/bootproof"; do
        if [ -n "$c" ] && [ -x "$c" ]; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    if command -v bootproof >/dev/null 2>&1; then
        command -v bootproof
        return 0
    fi
    return 1
}

if ! bin=$(find_bootproof); then
    problem error "bootproof-safe" "no bootproof binary (looked at BOOTPROOF_BIN, /usr/local/bin/bootproof, ~/.cargo/bin/bootproof, PATH): the rigs on this runner were NOT put in their safe state; install it as in ci/README.md"
    if [ "$strict" = 0 ]; then exit 0; fi
    exit 1
fi

# Split the list on blanks without globbing, then glob each word: a glob that matches nothing
# is reported; a plain path is kept even when missing, and reported below as unreadable.
read -r -a patterns <<<"$rig_patterns" || true
rigs=()
for pattern in "${patterns[@]}"; do
    matched=0
    # shellcheck disable=SC2206 # globbing the pattern is the point
    files=($pattern)
    for f in "${files[@]}"; do
        rigs+=("$f")
        matched=1
    done
    if [ "$matched" = 0 ]; then
        log "no rig config matches $pattern"
    fi
done
if [ "${#rigs[@]}" = 0 ]; then
    problem warning "bootproof-safe" "no rig configs ($rig_patterns): nothing to put in a safe state"
    exit 0
fi

failed=()
for rig in "${rigs[@]}"; do
    if [ ! -r "$rig" ]; then
        problem error "bootproof-safe: $rig" "cannot read the rig config $rig: this rig was NOT put in its safe state"
        failed+=("$rig")
        continue
    fi
    # Broken configs are reported by bootproof by key, with the fix; keep its words.
    if out=$("$bin" --lock-timeout-s "$lock_timeout" rig safe --rig "$rig" 2>&1); then
        log "$rig: safe: ${out//$'\n'/; }"
    else
        rc=$?
        problem error "bootproof-safe: $rig" "bootproof rig safe exited $rc, so this rig was NOT put in its safe state (a broken rig config, a missing GPIO, or a rig still held after ${lock_timeout} s): $out"
        failed+=("$rig")
    fi
done

if [ "${#failed[@]}" = 0 ]; then
    log "all ${#rigs[@]} rig(s) in their safe state"
    exit 0
fi
log "${#failed[@]} of ${#rigs[@]} rig(s) NOT in their safe state: ${failed[*]}"
if [ "$strict" = 0 ]; then
    exit 0
fi
exit 1
