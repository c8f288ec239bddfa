/** The NAT lab: see lab.ts for the topology and README.md for usage. */
export * from './addresses.js';
export { cleanStaleLabs, listLabNamespaces } from './cleanup.js';
export * from './errors.js';
export { type ExecOptions, type ExecResult, LineReader, run, runOk, waitForExit } from './exec.js';
export {
  createLab,
  type Lab,
  type LabBackbone,
  type LabHost,
  type LabNode,
  type LabRouter,
  type LabSpawnOptions,
  labTool,
} from './lab.js';
export {
  LAB_PREFIX,
  type LabInit,
  type LabPlan,
  type NatKind,
  type PortMappingInit,
  planLab,
  type SiteInit,
} from './plan.js';
export { describeLab, isCi, labSkipReason, missingPrerequisites, requireRoot } from './prereq.js';
export * from './probes.js';
