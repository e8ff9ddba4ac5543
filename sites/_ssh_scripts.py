"""The shell the ssh driver runs at the lab: launch, wrapper, status, cancel, limits.

POSIX sh only (the lab's /bin/sh may be dash); every value is quoted by the caller.
"""

from __future__ import annotations

from typing import Any

from lwfm.site import process_limits

# The detached wrapper. $1 = job dir, $2 = cwd, the rest = the job's argv. The job's
# environment comes from "$d/env" (mode 600, sent over stdin) so it never shows in the
# lab's process list. TERM is caught (not ignored, so the job itself still dies of it)
# so the wrapper survives a cancel long enough to record the exit code. Before the exit
# file appears, ``lwfm_finish`` (defined in the env file when the lab runs lwfm) records
# the job's end in the lab's store, so a pull right after the job ends sees it. The
# job's resource limits (``lwfm_limits``, also from the env file) apply in a subshell
# that execs the job, so they bind the job and not the wrapper's own bookkeeping.
WRAPPER = r'''
d=$1; cwd=$2; shift 2
echo $$ > "$d/pid.tmp" && mv -f "$d/pid.tmp" "$d/pid"
trap 'true' TERM
. "$d/env"
if cd "$cwd"; then
  ( if command -v lwfm_limits > /dev/null; then lwfm_limits || exit 125; fi; exec "$@" ) \
    > "$d/stdout" 2> "$d/stderr" < /dev/null; rc=$?
else rc=127; echo "lwfm: cannot cd to $cwd" > "$d/stderr"; fi
if command -v lwfm_finish > /dev/null; then
  if [ -e "$d/cancelled" ]; then st=CANCELLED; c=; elif [ $rc = 0 ]; then st=COMPLETE; c=0
  else st=FAILED; c=$rc; fi
  lwfm_finish "$LWFM_JOB_ID" $st $c < /dev/null > "$d/finish.log" 2>&1
fi
echo $rc > "$d/exit.tmp" && mv -f "$d/exit.tmp" "$d/exit"
'''

# Idempotent launch: `mkdir` claims the job dir, so re-sending the command after a
# dropped connection never starts a second copy; it just reports the first one's pid.
LAUNCH = r'''
d={d}
mkdir -p "$(dirname "$d")" || exit 3
if mkdir "$d" 2>/dev/null; then
  (umask 077 && cat > "$d/env") || exit 3
  setsid /bin/sh -c {wrapper} lwfm-job "$d" {cwd} {argv} < /dev/null > /dev/null 2>&1 &
else
  cat > /dev/null
fi
i=0
while [ ! -s "$d/pid" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
[ -s "$d/pid" ] && cat "$d/pid" || {{ echo "job did not start" >&2; exit 4; }}
'''

STATUS = r'''
d={d}
if [ -e "$d/cancelled" ]; then echo cancelled $(cat "$d/exit" 2>/dev/null)
elif [ -e "$d/exit" ]; then echo exit $(cat "$d/exit")
elif [ -s "$d/pid" ] && kill -0 -$(cat "$d/pid") 2>/dev/null; then echo running
elif [ -e "$d/exit" ]; then echo exit $(cat "$d/exit")
elif [ -s "$d/pid" ]; then echo vanished
elif [ -d "$d" ]; then echo starting
else echo missing; fi
'''

CANCEL = r'''
d={d}
[ -s "$d/pid" ] || {{ echo missing; exit 0; }}
[ -e "$d/exit" ] && {{ echo done; exit 0; }}
pg=$(cat "$d/pid")
touch "$d/cancelled"
kill -TERM -$pg 2>/dev/null
i=0
while [ ! -e "$d/exit" ] && kill -0 -$pg 2>/dev/null && [ $i -lt {ticks} ]; do sleep 0.1; i=$((i+1)); done
[ -e "$d/exit" ] || kill -KILL -$pg 2>/dev/null
echo cancelled
'''


#: ``ulimit`` flags of the rlimits (``lwfm.site.PROCESS_LIMITS``), in ulimit's units
_ULIMIT = {"RLIMIT_CPU": ("-t", 1), "RLIMIT_AS": ("-v", 1024), "RLIMIT_NOFILE": ("-n", 1)}


def limits_function(resources: dict[str, Any]) -> str:
    """The shell function ``lwfm_limits`` setting the job's rlimits ('' when none)."""
    limits = process_limits(resources)
    if not limits:
        return ""
    cmds = []
    for k, v in sorted(limits.items()):
        flag, v = _ULIMIT[k][0], v // _ULIMIT[k][1]
        hard = v + 1 if k == "RLIMIT_CPU" else v      # SIGXCPU before SIGKILL, as on venv
        cmds += [f"ulimit -S {flag} {v}", f"ulimit -H {flag} {hard}"]   # soft first: lowering
    return f"lwfm_limits() {{ {' && '.join(cmds)}; }}\n"
