/**
 * Tests against a real control plane run wherever the tools are cached or can be built. Elsewhere
 * (no Go) they skip with a loud reason, except under CI=true, where a skip would hide a broken
 * pipeline: there they run, and fail on the missing tools.
 */
import { afterAll, beforeAll, describe } from '@jest/globals';
import { type ControlPlane, type ControlPlaneOptions, startControlPlane } from './control-plane.js';
import { ControlPlaneNotStartedError, ToolsUnavailableError } from './errors.js';
import { ensureTools, probeTools, type ToolPaths } from './tools.js';

/** Long enough for a cold build of kube-apiserver on a small shared machine (measured ~15 min). */
export const TOOLS_TIMEOUT_MS = 60 * 60_000;

const inCI = (): boolean => process.env.CI === 'true';

function shout(what: string, reason: string): void {
  const bar = '!'.repeat(78);
  console.warn(
    `\n${bar}\n!! SKIPPED: ${what}\n!! The real kube-apiserver/kube-controller-manager/etcd/kubectl/helm cannot be built here:\n` +
      `${reason
        .split('\n')
        .map((l) => `!!   ${l}`)
        .join('\n')}\n!! Install Go >= 1.26 (or set GO=/path/to/go) to run these tests; CI=true makes` +
      ` this a failure.\n${bar}\n`,
  );
}

/**
 * The tool paths, building them if needed; `undefined` (after a loud warning) when they cannot be
 * built here and CI is not `true`. Under CI=true a missing toolchain throws ToolsUnavailableError.
 */
export async function requireTools(
  what = 'tests that need a real API server',
): Promise<ToolPaths | undefined> {
  try {
    return await ensureTools();
  } catch (err) {
    if (err instanceof ToolsUnavailableError && !inCI()) {
      shout(what, err.reason);
      return undefined;
    }
    throw err;
  }
}

/** What a `describeWithControlPlane` body gets: the control plane, readable inside tests and hooks. */
export interface ControlPlaneContext {
  /** Throws ControlPlaneNotStartedError outside tests/hooks or when the start failed. */
  readonly cp: ControlPlane;
}

/**
 * `describe` with a control plane started in `beforeAll` (building the tools first on a cold
 * cache) and stopped in `afterAll`; `describe.skip` with a loud reason when the tools cannot be
 * built here and CI is not `true`.
 */
export function describeWithControlPlane(
  name: string,
  body: (ctx: ControlPlaneContext) => void,
  opts: ControlPlaneOptions = {},
): void {
  let cp: ControlPlane | undefined;
  const ctx: ControlPlaneContext = {
    get cp(): ControlPlane {
      if (cp === undefined) throw new ControlPlaneNotStartedError();
      return cp;
    },
  };
  // Jest collects tests synchronously, so the skip decision uses the cheap synchronous probe.
  const probe = probeTools();
  if (!probe.ok && !inCI()) {
    shout(name, probe.reason);
    describe.skip(name, () => body(ctx));
    return;
  }
  describe(name, () => {
    beforeAll(async () => {
      const tools = await ensureTools();
      cp = await startControlPlane({ ...opts, tools });
    }, TOOLS_TIMEOUT_MS);
    afterAll(async () => {
      await cp?.stop();
      cp = undefined;
    });
    body(ctx);
  });
}
