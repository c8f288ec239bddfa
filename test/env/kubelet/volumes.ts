/**
 * Volumes as a kubelet makes them, for a runtime without containers: each volume is a directory
 * under the pod's run dir (Secret and ConfigMap items written with their modes, emptyDir empty), and
 * `mountScript` makes those directories appear at their mountPath inside the container's own mount
 * namespace (`unshare --mount`), never on the host:
 * - a mountPath that exists on the host is bind-mounted over (privately);
 * - a missing one gets an overlay (upper dir on a tmpfs) on its nearest existing ancestor, so the
 *   missing directories are created in the overlay; the ancestor's content stays visible, but mounts
 *   below it (e.g. /run/netns under /run) are hidden from the container;
 * - a missing top-level directory (e.g. /data) would need an overlay on `/`, which cannot be made
 *   visible without a chroot: refused (CreateContainerError).
 * Ownership follows Kubernetes: files are root's; with pod `fsGroup` their group is that group and
 * they are group-readable (without it, a non-root container cannot read a 0440 Secret file, as on a
 * real node).
 */
import { statSync } from 'node:fs';
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import { ContainerConfigError, type ObjectSource } from './env.js';

/** One bind mount of a container: `source` (a host path) appears at `target` inside it. */
export interface Mount {
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
}

/** A volume that cannot be made (missing Secret, unsupported type): the pod stays ContainerCreating. */
export class VolumeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VolumeError';
  }
}

async function writeItems(
  dir: string,
  entries: ReadonlyArray<readonly [string, Buffer]>,
  items: ReadonlyArray<{ key: string; path: string; mode?: number }> | undefined,
  defaultMode: number,
  what: string,
  fsGroup: number | undefined,
): Promise<void> {
  const byKey = new Map(entries);
  const wanted = items ?? entries.map(([key]) => ({ key, path: key, mode: undefined }));
  for (const item of wanted) {
    const data = byKey.get(item.key);
    if (data === undefined) throw new VolumeError(`${what} has no key ${item.key}`);
    const path = join(dir, normalize(item.path));
    if (!path.startsWith(`${dir}/`))
      throw new VolumeError(`${what}: item path ${item.path} leaves the volume`);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data);
    let mode = item.mode ?? defaultMode;
    if (fsGroup !== undefined) {
      await chown(path, 0, fsGroup);
      // What the kubelet's SetVolumeOwnership does for a read-only volume: group may read.
      mode |= 0o440;
    }
    await chmod(path, mode);
  }
}

/** Materialises one volume under `dir` (created here). */
export async function makeVolume(
  source: ObjectSource,
  pod: V1Pod,
  volume: V1Volume,
  dir: string,
): Promise<void> {
  const ns = pod.metadata?.namespace ?? '';
  const fsGroup = pod.spec?.securityContext?.fsGroup;
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  if (volume.secret !== undefined) {
    const name = volume.secret.secretName ?? '';
    const secret = await source.secret(ns, name);
    if (secret === undefined) {
      if (volume.secret.optional === true) return;
      throw new VolumeError(`secret "${name}" not found`);
    }
    const entries = [
      ...Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')] as const),
      ...Object.entries(secret.stringData ?? {}).map(([k, v]) => [k, Buffer.from(v)] as const),
    ];
    await writeItems(
      dir,
      entries,
      volume.secret.items,
      volume.secret.defaultMode ?? 0o644,
      `secret ${name}`,
      fsGroup,
    );
  } else if (volume.configMap !== undefined) {
    const name = volume.configMap.name ?? '';
    const cm = await source.configMap(ns, name);
    if (cm === undefined) {
      if (volume.configMap.optional === true) return;
      throw new VolumeError(`configmap "${name}" not found`);
    }
    const entries = [
      ...Object.entries(cm.data ?? {}).map(([k, v]) => [k, Buffer.from(v)] as const),
      ...Object.entries(cm.binaryData ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')] as const),
    ];
    await writeItems(
      dir,
      entries,
      volume.configMap.items,
      volume.configMap.defaultMode ?? 0o644,
      `configmap ${name}`,
      fsGroup,
    );
  } else if (volume.projected !== undefined && source.serviceAccountToken !== undefined) {
    // Only projected ServiceAccount tokens (what the injected sidecar of a credentialed network
    // mounts); the kubelet asks TokenRequest for a token bound to the pod. Written once, not renewed.
    for (const s of volume.projected.sources ?? []) {
      const t = s.serviceAccountToken;
      if (t === undefined)
        throw new VolumeError(`volume ${volume.name}: only serviceAccountToken projections are supported`);
      const token = await source.serviceAccountToken(
        {
          namespace: ns,
          name: pod.metadata?.name ?? '',
          uid: pod.metadata?.uid ?? '',
          serviceAccount: pod.spec?.serviceAccountName ?? 'default',
        },
        { audience: t.audience ?? '', expirationSeconds: t.expirationSeconds ?? 3600 },
      );
      await writeItems(
        dir,
        [[t.path, Buffer.from(token)]],
        undefined,
        volume.projected.defaultMode ?? 0o644,
        `volume ${volume.name}`,
        fsGroup,
      );
    }
  } else if (volume.emptyDir !== undefined) {
    // A kubelet's emptyDir is world-writable, so any user of the pod can use it.
    await chmod(dir, 0o777);
  } else {
    throw new VolumeError(
      `volume ${volume.name}: only secret, configMap, emptyDir and projected token volumes are supported`,
    );
  }
}

/** The container's mounts, from its volumeMounts and the pod's volume directories. */
export function containerMounts(container: V1Container, volumeDir: (name: string) => string): Mount[] {
  return (container.volumeMounts ?? []).map((m) => {
    const base = volumeDir(m.name);
    const source = m.subPath ? join(base, normalize(m.subPath)) : base;
    if (!source.startsWith(base))
      throw new ContainerConfigError(`subPath ${m.subPath} leaves volume ${m.name}`);
    if (!m.mountPath.startsWith('/'))
      throw new ContainerConfigError(`mountPath ${m.mountPath} is not absolute`);
    return { source, target: normalize(m.mountPath), readOnly: m.readOnly === true };
  });
}

/**
 * A POSIX shell script that makes `mounts` appear, to be run as `sh -c SCRIPT sh <scratch>
 * <private dir>... -- <src> <target> <ro|rw>...` inside a private mount namespace (`unshare --mount --propagation private`).
 * `scratch` is a directory for the overlays' tmpfs (under the run dir). It ends by exec'ing
 * "$@" after the mount arguments and a `--`.
 */
export const MOUNT_SCRIPT = `set -e
scratch=$1; shift
overlaid=
n=0
# Private directories above the image (this work tree): an overlay whose top is made traversable,
# in this mount namespace only, so the container's user reaches the files a real image would have.
while [ "$1" != -- ]; do
  n=$((n+1)); d="$scratch/overlay$n"; mkdir -p "$d"
  mount -t tmpfs -o mode=0755 tmpfs "$d"; mkdir "$d/upper" "$d/work"
  mount -t overlay overlay -o "lowerdir=$1,upperdir=$d/upper,workdir=$d/work" "$1"
  chmod o+x "$1"
  shift
done
shift
prepare() {
  while [ "$1" != -- ]; do
    src=$1; tgt=$2; shift 3
    [ -e "$tgt" ] && continue
    p=$(dirname "$tgt")
    while [ ! -e "$p" ]; do p=$(dirname "$p"); done
    p=$(realpath "$p")
    covered=
    for o in $overlaid; do case "$p/" in "$o"/*) covered=1;; esac; done
    if [ -z "$covered" ]; then
      if [ "$p" = / ]; then
        echo "mountPath $tgt: a new top-level directory needs an overlay on /, which the lab kubelet does not make" >&2
        exit 97
      fi
      n=$((n+1)); d="$scratch/overlay$n"; mkdir -p "$d"
      mount -t tmpfs -o mode=0755 tmpfs "$d"; mkdir "$d/upper" "$d/work"
      mount -t overlay overlay -o "lowerdir=$p,upperdir=$d/upper,workdir=$d/work" "$p"
      overlaid="$overlaid $p"
    fi
    if [ -d "$src" ]; then mkdir -p "$tgt"; else mkdir -p "$(dirname "$tgt")"; : > "$tgt"; fi
  done
}
bind() {
  while [ "$1" != -- ]; do
    mount --bind "$1" "$2"
    if [ "$3" = ro ]; then mount -o remount,bind,ro "$2"; fi
    shift 3
  done
}
# Every overlay first, then the binds: an overlay made later would hide a bind below it.
prepare "$@"
bind "$@"
while [ "$1" != -- ]; do shift 3; done
shift
exec "$@"
`;

/** The argv prefix that runs `rest` with `mounts` in place (nothing when there are none). */
export function mountPrefix(
  mounts: readonly Mount[],
  scratch: string,
  privateDirs: readonly string[] = [],
): string[] {
  if (mounts.length === 0 && privateDirs.length === 0) return [];
  // Parents before children: a volume mounted inside another one's mountPath stays visible.
  const ordered = [...mounts].sort((a, b) => a.target.length - b.target.length);
  return [
    'unshare',
    '--mount',
    '--propagation',
    'private',
    '/bin/sh',
    '-c',
    MOUNT_SCRIPT,
    'sh',
    scratch,
    ...privateDirs,
    '--',
    ...ordered.flatMap((m) => [m.source, m.target, m.readOnly ? 'ro' : 'rw']),
    '--',
  ];
}

/**
 * `path`'s directory and those above it, outermost first, that others may not traverse (no o+x): a work
 * tree checked out under `mktemp -d` (0700) or /root. A container running as its image's user
 * could not reach the "image" files below them.
 */
export function untraversableParents(path: string): string[] {
  const out: string[] = [];
  let p = dirname(path);
  const chain: string[] = [];
  while (p !== dirname(p)) {
    chain.unshift(p);
    p = dirname(p);
  }
  for (const dir of chain) if ((statSync(dir).mode & 0o001) === 0) out.push(dir);
  return out;
}
