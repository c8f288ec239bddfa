/** Named errors of the NAT traversal area. Tests check `name`, never message text. */

/**
 * Outgoing TCP connections cannot come from the listening port, so TCP hole punching cannot
 * work: neither `net.BoundSocket` (Node >= 24.19) nor the reuse-port addon is usable. Dials still
 * work, from ephemeral ports.
 */
export class ReusePortUnavailableError extends Error {
  constructor(reason: string, options?: ErrorOptions) {
    super(`TCP dials cannot use the listening port (${reason}); TCP hole punching is off`, options);
    this.name = 'ReusePortUnavailableError';
  }
}
