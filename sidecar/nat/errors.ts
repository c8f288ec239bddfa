/** Named errors of the NAT traversal area. Tests check `name`, never message text. */

/**
 * Outgoing TCP connections cannot come from the listening port, so TCP hole punching cannot
 * work: this Node has no `net.BoundSocket` (Node >= 24.19 has). Dials still work, from ephemeral
 * ports.
 */
export class ReusePortUnavailableError extends Error {
  constructor(reason: string, options?: ErrorOptions) {
    super(`TCP dials cannot use the listening port (${reason}); TCP hole punching is off`, options);
    this.name = 'ReusePortUnavailableError';
  }
}

/** The hole puncher refused a peer, found nothing to dial, or could not close a relayed connection. */
export class HolePunchSetupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'HolePunchSetupError';
  }
}

/** A DCUtR message broke the protocol or its bounds (size, address count, type, order). */
export class DcutrMessageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DcutrMessageError';
  }
}

/** The relay client cannot find the circuit relay transport it manages reservations for. */
export class RelayClientSetupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RelayClientSetupError';
  }
}

/** A relay reservation waits for a connection to the relay (the bootstrap keeper dials it). */
export class RelayNotConnectedError extends Error {
  constructor(relay: string) {
    super(`not connected to relay ${relay} (the bootstrap keeper is dialing it)`);
    this.name = 'RelayNotConnectedError';
  }
}
