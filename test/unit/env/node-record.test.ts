/**
 * The owner record of a real node run (test/env/node-record.ts) is trusted with deletions: a
 * malformed one, or one naming anything but the run's own directory and the kubelet's host paths,
 * is refused with one line naming the field.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { cleanStaleNodes } from '../../env/node-janitor.js';
import {
  type NodeRecord,
  NodeRecordError,
  parseRecord,
  recordPath,
  runDirOf,
  runNameOfRecordFile,
  serializeRecord,
} from '../../env/node-record.js';

const runName = 'ptnode-a-0-1a2b3c';
const dir = runDirOf(runName);
const file = recordPath(dir);
const good: NodeRecord = {
  pid: 4242,
  startTime: '6983862',
  runName,
  dir,
  sysctls: { 'vm/overcommit_memory': '0', 'kernel/panic': '1', 'kernel/panic_on_oops': '0' },
  absentPaths: ['/var/lib/kubelet', '/var/lib/cni'],
};

/** The error thrown for `record` (JSON-serialized unless a string), or undefined if accepted. */
function refusal(record: unknown, at = file): NodeRecordError | undefined {
  try {
    parseRecord(typeof record === 'string' ? record : JSON.stringify(record), at);
    return undefined;
  } catch (err) {
    if (err instanceof NodeRecordError) return err;
    throw err;
  }
}

describe('real node owner record', () => {
  it('round-trips a record beginRun would write', () => {
    expect(dir).toBe(join(tmpdir(), runName));
    expect(file).toBe(join(tmpdir(), `${runName}.owner.json`));
    expect(parseRecord(serializeRecord(good), file)).toEqual(good);
    expect(parseRecord(JSON.stringify({ ...good, startTime: null }), file).startTime).toBeNull();
  });

  it('finds record files by name only in the ptnode-<name>-<6 hex>.owner.json form', () => {
    expect(runNameOfRecordFile(`${runName}.owner.json`)).toBe(runName);
    for (const f of [
      'ptnode-a-0-1a2b3c',
      'ptnode-a-0-1a2b3c.json',
      'ptnode--1a2b3c.owner.json',
      'ptnode-a-0-XYZXYZ.owner.json',
      'ptnode-../../etc-1a2b3c.owner.json',
      'ptlab-1-abcd.owner.json',
    ]) {
      expect([f, runNameOfRecordFile(f)]).toEqual([f, undefined]);
    }
  });

  it.each([
    ['not JSON', '{"pid": 1', '(json)'],
    ['an array', [], '(json)'],
    ['no pid', { ...good, pid: undefined }, 'pid'],
    ['a negative pid', { ...good, pid: -1 }, 'pid'],
    ['a fractional pid', { ...good, pid: 1.5 }, 'pid'],
    ['a startTime that is not digits', { ...good, startTime: 'x' }, 'startTime'],
    ['another run name', { ...good, runName: 'ptnode-b-0-1a2b3c' }, 'runName'],
    ['dir /', { ...good, dir: '/' }, 'dir'],
    ['dir the temp dir itself', { ...good, dir: tmpdir() }, 'dir'],
    ['dir another run', { ...good, dir: runDirOf('ptnode-b-0-1a2b3c') }, 'dir'],
    ['dir escaping by ..', { ...good, dir: `${dir}/../..` }, 'dir'],
    ['dir a host path', { ...good, dir: '/var/lib/kubelet' }, 'dir'],
    ['no sysctls', { ...good, sysctls: undefined }, 'sysctls'],
    [
      'a sysctl the kubelet does not set',
      { ...good, sysctls: { 'kernel/modprobe': '/bin/x' } },
      'sysctls.kernel/modprobe',
    ],
    [
      'a sysctl path escaping /proc/sys',
      { ...good, sysctls: { '../../etc/passwd': '0' } },
      'sysctls.../../etc/passwd',
    ],
    [
      'a sysctl value that is not an integer',
      { ...good, sysctls: { 'kernel/panic': '1; rm' } },
      'sysctls.kernel/panic',
    ],
    ['no absentPaths', { ...good, absentPaths: undefined }, 'absentPaths'],
    ['absentPaths naming /', { ...good, absentPaths: ['/'] }, 'absentPaths'],
    ['absentPaths naming /var/lib', { ...good, absentPaths: ['/var/lib'] }, 'absentPaths'],
    [
      'absentPaths escaping a kubelet path',
      { ...good, absentPaths: ['/var/lib/kubelet/../..'] },
      'absentPaths',
    ],
    ['absentPaths naming the run dir', { ...good, absentPaths: [dir] }, 'absentPaths'],
    ['absentPaths with a non-string', { ...good, absentPaths: [1] }, 'absentPaths'],
  ])('refuses %s, naming the field on one line', (_what, record, field) => {
    const err = refusal(record);
    expect(err?.field).toBe(field);
    expect(err?.message.split('\n')).toHaveLength(1);
    expect(err?.message).toContain(file);
    expect(err?.message).toContain(field);
  });

  it('refuses a record stored under a name other than its run', () => {
    expect(refusal(good, join(tmpdir(), 'owner.json'))?.field).toBe('(file)');
    expect(refusal(good, recordPath(runDirOf('ptnode-b-0-1a2b3c')))?.field).toBe('runName');
  });

  it('derives the directory from where the record is, never from its content', () => {
    // A record moved elsewhere names that place's sibling; its old `dir` is refused.
    expect(refusal(good, join('/srv', `${runName}.owner.json`))?.field).toBe('dir');
    const moved = parseRecord(
      JSON.stringify({ ...good, dir: join('/srv', runName) }),
      join('/srv', `${runName}.owner.json`),
    );
    expect(moved.dir).toBe(join('/srv', runName));
  });

  it('leaves a refused record and every path it names alone in the janitor, with one line', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ptnode-record-test-'));
    try {
      // The janitor looks in `root` (not the temp dir real runs use): a record of a dead owner naming `/`.
      const runDir = join(root, runName);
      const victim = join(root, 'victim');
      mkdirSync(runDir);
      mkdirSync(victim);
      const refused = recordPath(runDir);
      writeFileSync(refused, JSON.stringify({ ...good, pid: 999_999_999, dir: runDir, absentPaths: ['/'] }));
      const lines: string[] = [];
      expect(await cleanStaleNodes((l) => lines.push(l), root)).toEqual([]);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(refused);
      expect(lines[0]).toMatch(/absentPaths: "\/" is not one of/);
      expect(existsSync(refused)).toBe(true);
      expect(existsSync(runDir)).toBe(true);
      expect(existsSync(victim)).toBe(true);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
