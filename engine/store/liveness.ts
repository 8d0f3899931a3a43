// Who runs a run: enough about a process to tell later, from another process,
// whether it is still alive. A pid alone is not enough: after a reboot or a
// long uptime the same pid can belong to an unrelated process (in a container
// the engine may even get its old pid back), so the host, the boot and — where
// the OS tells — the process's start time are recorded with it.
import fs from 'node:fs';
import os from 'node:os';
import type { ProcessIdentity } from './records';

/** Outside Linux there is no boot id; the boot time (seconds) stands in, compared with a tolerance. */
const BOOT_TIME_PREFIX = 'boot-at-';
const BOOT_TIME_TOLERANCE_S = 120;

function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return `${BOOT_TIME_PREFIX}${Math.round(Date.now() / 1000 - os.uptime())}`;
  }
}

interface ProcStat {
  state: string;
  startTime: string;
}

/** Fields of /proc/<pid>/stat after the command name (which may itself hold spaces and parentheses). */
function procStat(pid: number): ProcStat | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 of proc(5) (state); starttime is field 22.
    return { state: fields[0], startTime: fields[19] };
  } catch {
    return null;
  }
}

export function currentProcess(): ProcessIdentity {
  return { pid: process.pid, host: os.hostname(), bootId: bootId(), startTime: procStat(process.pid)?.startTime ?? null };
}

function sameBoot(a: string, b: string): boolean {
  if (a.startsWith(BOOT_TIME_PREFIX) && b.startsWith(BOOT_TIME_PREFIX)) {
    const ta = Number(a.slice(BOOT_TIME_PREFIX.length));
    const tb = Number(b.slice(BOOT_TIME_PREFIX.length));
    return Math.abs(ta - tb) <= BOOT_TIME_TOLERANCE_S;
  }
  return a === b;
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the process is still running. A process on another host or from an
 * earlier boot counts as gone; so does a zombie (killed, not yet reaped) and a
 * pid now held by a process that started at a different time.
 */
export function isProcessAlive(owner: ProcessIdentity, here: ProcessIdentity = currentProcess()): boolean {
  if (owner.host !== here.host || !sameBoot(owner.bootId, here.bootId)) return false;
  if (!pidExists(owner.pid)) return false;
  const stat = procStat(owner.pid);
  if (!stat) return true;
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return owner.startTime === null || owner.startTime === stat.startTime;
}

/** Whether a pid on this host (e.g. the one in a temporary file's name) belongs to a live process. */
export function isLocalPidAlive(pid: number): boolean {
  if (!pidExists(pid)) return false;
  const state = procStat(pid)?.state;
  return state !== 'Z' && state !== 'X';
}
