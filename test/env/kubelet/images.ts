/**
 * "Images" of the lab kubelet: there is no container runtime, so an image is a description of the
 * host programs it stands for — its ENTRYPOINT, CMD, WORKDIR, USER and ENV — and the kubelet runs
 * those host binaries in the pod's network namespace. Pure: no I/O.
 */
import { join } from 'node:path';
import type { V1Container } from '@kubernetes/client-node';
import { BUNDLE_PATH, NODE_FLAGS } from '../../../sidecar/node/flags.js';

/** Where a container's argv comes from, as in a Dockerfile. */
export interface ImageSpec {
  /** ENTRYPOINT: container.args are appended to it (or to the command, when `command` is set). */
  readonly entrypoint?: readonly string[];
  /** CMD: used when the container has neither `command` nor `args`. */
  readonly cmd?: readonly string[];
  /**
   * WORKDIR. `DATA_DIR` stands for a fresh empty directory per container (what an image's
   * `VOLUME /data` + `WORKDIR /data` gives each container); default: the container's data dir too,
   * so nothing a program writes to its cwd lands in the host's `/`.
   */
  readonly workingDir?: string;
  /** ENV of the image; the container's env overrides it. */
  readonly env?: Readonly<Record<string, string>>;
  /** USER of the image (numeric uid, gid), used unless the securityContext says otherwise. */
  readonly user?: { readonly uid: number; readonly gid: number };
}

/** Placeholder for the container's own empty directory in ImageSpec argv and workingDir. */
export const DATA_DIR = '<data-dir>';

/** `LabKubeletOptions.imageCommands` values: an argv is an ENTRYPOINT (args are appended). */
export type ImageInit = readonly string[] | ImageSpec;

/** The same PATH a Debian-based image has. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The images the e2e needs, by repository. The peertunnel image's entrypoint is our CLI (see the
 * Dockerfile: the bundle dist/bundle/peertunnel.mjs run with the flags of sidecar/node/flags.ts,
 * USER 65532, HOME=/tmp): here the bundle built in this work tree under this process's Node.
 * `redis` is Debian's redis-server.
 */
export function defaultImages(repoRoot: string): Record<string, ImageSpec> {
  const debian: ImageSpec = { cmd: ['bash'] };
  return {
    'ghcr.io/peertunnel/peertunnel': {
      entrypoint: [process.execPath, ...NODE_FLAGS, join(repoRoot, BUNDLE_PATH)],
      cmd: ['--help'],
      workingDir: repoRoot,
      env: { NODE_ENV: 'production', HOME: '/tmp' },
      user: { uid: 65532, gid: 65532 },
    },
    // Persistence off: RDB snapshots and the AOF would write into the data dir behind the test's
    // back (and `save` forks a child that can outlive a SIGKILLed parent for a moment, which the
    // lab's teardown would then report as a leftover); a lab redis is a cache that dies with the pod.
    redis: {
      cmd: ['redis-server', '--save', '', '--appendonly', 'no', '--dir', DATA_DIR],
      workingDir: DATA_DIR,
    },
    debian,
    ubuntu: debian,
    busybox: { cmd: ['sh'] },
    alpine: { cmd: ['sh'] },
    // The pause container: sleeps until killed.
    'registry.k8s.io/pause': { entrypoint: ['sleep', 'infinity'] },
  };
}

/** `ghcr.io/x/y:1.0@sha256:..` → `ghcr.io/x/y`; `docker.io/library/redis:7` → `redis`. */
export function imageRepository(image: string): string {
  let repo = image.split('@')[0] ?? image;
  const slash = repo.lastIndexOf('/');
  const colon = repo.lastIndexOf(':');
  if (colon > slash) repo = repo.slice(0, colon);
  for (const prefix of ['docker.io/library/', 'index.docker.io/library/', 'library/', 'docker.io/']) {
    if (repo.startsWith(prefix)) return repo.slice(prefix.length);
  }
  return repo;
}

export function toImageSpec(init: ImageInit): ImageSpec {
  return Array.isArray(init) ? { entrypoint: [...(init as readonly string[])] } : (init as ImageSpec);
}

/** The image a container names, or undefined: "pulling" it fails (ErrImagePull). */
export function findImage(
  images: Readonly<Record<string, ImageSpec>>,
  image: string | undefined,
): ImageSpec | undefined {
  if (image === undefined || image === '') return undefined;
  return images[imageRepository(image)] ?? images[image];
}

/**
 * The argv Kubernetes runs: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD.
 * https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/#notes
 */
export function containerArgv(image: ImageSpec, container: V1Container): string[] {
  const command = container.command ?? [];
  const args = container.args;
  if (command.length > 0) return [...command, ...(args ?? [])];
  return [...(image.entrypoint ?? []), ...(args ?? image.cmd ?? [])];
}

/**
 * `$(VAR)` references in command and args, expanded from the container's env as a kubelet does;
 * `$$(VAR)` escapes; unknown references stay as written.
 */
export function expandVars(value: string, env: Readonly<Record<string, string>>): string {
  return value.replace(
    /\$(\$)?\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g,
    (whole, escaped: string | undefined, name: string) => {
      if (escaped !== undefined) return `$(${name})`;
      return env[name] ?? whole;
    },
  );
}
