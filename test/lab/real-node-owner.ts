/**
 * The owner of a real node run, as a process real-node-janitor.test.ts can SIGKILL. Run with
 * `node --experimental-transform-types --import ./ts-resolve.ts real-node-owner.ts '<json>'`:
 *
 * - `{"mode":"node",...}`: a NAT lab site, a control plane, a real node (real-node.ts) and a pod on
 *   it with a memory-backed emptyDir, then `READY {"dir":...}` on stdout, then nothing until killed.
 * - `{"mode":"record"}`: only an owner record and its directory (a live run to leave alone), then
 *   `READY {"dir":...}`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { startControlPlane } from '../env/control-plane.js';
import type { BuiltImage } from '../env/images.js';
import { beginRun } from '../env/node-janitor.js';
import { startRealNode } from '../env/real-node.js';
import type { NodeToolPaths, ToolPaths } from '../env/tools.js';
import { createLab } from './lab.js';

export interface OwnerInit {
  mode: 'node' | 'record';
  tools?: ToolPaths;
  nodeTools?: NodeToolPaths;
  pause?: BuiltImage;
}

const OWNER_NODE = 'janitor-0';
const OWNER_POD = 'leftover';

async function main(init: OwnerInit): Promise<void> {
  if (init.mode === 'record') {
    const record = await beginRun('live-0');
    process.stdout.write(`READY ${JSON.stringify({ dir: record.dir })}\n`);
    return;
  }
  const { tools, nodeTools, pause } = init;
  if (!tools || !nodeTools || !pause) throw new Error('mode node needs tools, nodeTools, pause');
  const lab = await createLab({ relays: 1, sites: [{ name: 'a', nat: 'eim', hosts: 1 }] });
  const cp = await startControlPlane({ tools, egressProxy: true });
  const node = await startRealNode({
    name: OWNER_NODE,
    cp,
    host: lab.host('a', 0),
    podCidr: '198.19.9.0/24',
    tools: nodeTools,
    images: [pause],
  });
  await cp.apply([
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: OWNER_POD, namespace: 'default' },
      spec: {
        nodeName: OWNER_NODE,
        automountServiceAccountToken: false,
        tolerations: [{ operator: 'Exists' }],
        containers: [
          {
            name: 'main',
            image: pause.ref,
            imagePullPolicy: 'Never',
            volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }],
          },
        ],
        volumes: [{ name: 'scratch', emptyDir: { medium: 'Memory' } }],
      },
    },
  ]);
  for (let i = 0; ; i++) {
    const r = await cp.request(`/api/v1/namespaces/default/pods/${OWNER_POD}`);
    if (
      r.status === 200 &&
      (JSON.parse(r.body) as { status?: { phase?: string } }).status?.phase === 'Running'
    )
      break;
    if (i > 600) throw new Error(`pod ${OWNER_POD} not Running:\n${r.body}\n${node.logTail(30)}`);
    await sleep(100);
  }
  process.stdout.write(`READY ${JSON.stringify({ dir: node.dir })}\n`);
}

await main(JSON.parse(process.argv[2] ?? '{}') as OwnerInit);
// Until killed: nothing here stops what it started.
setInterval(() => undefined, 60_000);
