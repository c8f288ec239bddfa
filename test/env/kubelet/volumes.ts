/**
 * Volumes as a kubelet makes them, for the loopback pod runner (no container runtime): each volume
 * is a directory under the pod's run dir (Secret and ConfigMap items written with their modes,
 * projected sources, emptyDir empty); config paths under a mountPath are pointed there. Ownership
 * follows Kubernetes: files are root's; with pod `fsGroup` their group is that group and they are
 * group-readable (without it, a non-root container cannot read a 0440 Secret file, as on a real
 * node).
 */
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import type { V1Pod, V1Volume } from '@kubernetes/client-node';
import type { ObjectSource } from './env.js';

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
