/** Errors of the NAT lab. Tests check `name`, never the message text. */

export class LabError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LabError';
  }
}

/** The lab's options are invalid (unknown site, too many hosts, bad name...). */
export class LabConfigError extends LabError {
  constructor(message: string) {
    super(message);
    this.name = 'LabConfigError';
  }
}

/** The machine cannot run the lab: not root, or a required program is missing. */
export class LabPrerequisiteError extends LabError {
  readonly missing: readonly string[];
  constructor(missing: readonly string[]) {
    super(`the NAT lab cannot run on this machine: ${missing.join('; ')}`);
    this.name = 'LabPrerequisiteError';
    this.missing = missing;
  }
}

/** A command the lab ran (ip, iptables-nft-restore, nft, ...) failed. */
export class LabCommandError extends LabError {
  readonly command: string;
  readonly args: readonly string[];
  readonly code: number | null;
  readonly stderr: string;
  constructor(command: string, args: readonly string[], code: number | null, stderr: string) {
    super(`${command} ${args.join(' ')} exited with ${code ?? 'a signal'}: ${stderr.trim().slice(-2000)}`);
    this.name = 'LabCommandError';
    this.command = command;
    this.args = args;
    this.code = code;
    this.stderr = stderr;
  }
}

/** Something the lab waited for did not happen in time. */
export class LabTimeoutError extends LabError {
  constructor(what: string, timeoutMs: number, detail = '') {
    super(`timed out after ${timeoutMs} ms waiting for ${what}${detail ? `: ${detail}` : ''}`);
    this.name = 'LabTimeoutError';
  }
}

/** A process the lab waited on exited before it was ready. */
export class LabProcessExitedError extends LabError {
  constructor(what: string, code: number | null, signal: string | null, detail = '') {
    super(
      `${what} exited (code ${code}, signal ${signal}) before it was ready${detail ? `: ${detail}` : ''}`,
    );
    this.name = 'LabProcessExitedError';
  }
}

/** miniupnpd did not come up with port forwarding enabled. */
export class MiniupnpdStartError extends LabError {
  readonly log: string;
  constructor(router: string, reason: string, log: string) {
    super(`miniupnpd on router ${router}: ${reason}\n${log.slice(-3000)}`);
    this.name = 'MiniupnpdStartError';
    this.log = log;
  }
}

/** Tearing the lab down left something behind; every step was still attempted. */
export class LabCleanupError extends LabError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`lab cleanup incomplete: ${problems.join('; ')}`);
    this.name = 'LabCleanupError';
    this.problems = problems;
  }
}
