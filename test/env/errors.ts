/** Errors of the test environment. Tests check `name`, never the message text. */

/** The tools cannot be built here at all (no usable Go toolchain): tests may skip, outside CI. */
export class ToolsUnavailableError extends Error {
  constructor(readonly reason: string) {
    super(`Kubernetes test tools are not available: ${reason}`);
    this.name = 'ToolsUnavailableError';
  }
}

/** Building the tools was possible but failed: always a failure, never a skip. */
export class ToolsBuildError extends Error {
  constructor(
    readonly exitCode: number | null,
    readonly output: string,
  ) {
    super(`building the Kubernetes test tools failed (exit ${String(exitCode)}):\n${output}`);
    this.name = 'ToolsBuildError';
  }
}

/** The daemons of a test control plane. */
export type ControlPlaneComponent = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler';

/** A control plane daemon did not come up; `log` is the tail of its output. */
export class ControlPlaneStartError extends Error {
  constructor(
    readonly component: ControlPlaneComponent,
    readonly detail: string,
    readonly log: string,
  ) {
    super(`${component} did not start: ${detail}\n--- last lines of ${component}'s log ---\n${log}`);
    this.name = 'ControlPlaneStartError';
  }
}

/** A command (kubectl, helm) exited non-zero where the caller required success. */
export class CommandFailedError extends Error {
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(`${command} ${args.join(' ')} exited ${String(code)}: ${stderr.trim()}`);
    this.name = 'CommandFailedError';
  }
}

/** The options asked for something the control plane cannot express (e.g. a comma in a user name). */
export class ControlPlaneOptionsError extends Error {
  constructor(
    readonly field: string,
    readonly value: string,
    expected: string,
  ) {
    super(`${field}: ${JSON.stringify(value)} is not allowed; expected ${expected}`);
    this.name = 'ControlPlaneOptionsError';
  }
}

/** A test read the control plane before `beforeAll` started it (or after it failed to start). */
export class ControlPlaneNotStartedError extends Error {
  constructor() {
    super('the control plane is not running: it failed to start, or was read outside a test');
    this.name = 'ControlPlaneNotStartedError';
  }
}
