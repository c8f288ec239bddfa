/** Named errors of port mapping. Tests check `name`, never message text. */

/** Why no mapping could be made; `reason` is a fixed code for logs and status. */
export type PortMappingFailure =
  | 'no_gateway'
  | 'no_local_address'
  | 'not_listening'
  | 'refused'
  | 'timeout'
  | 'bad_response'
  | 'unsupported_library';

/** The gateway could not be found, or would not map. */
export class PortMappingError extends Error {
  readonly reason: PortMappingFailure;
  readonly protocol: 'upnp' | 'natpmp';
  constructor(
    protocol: 'upnp' | 'natpmp',
    reason: PortMappingFailure,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`${protocol}: ${detail}`, options);
    this.name = 'PortMappingError';
    this.reason = reason;
    this.protocol = protocol;
  }
}

/** Neither enabled protocol produced a mapping; `errors` holds one per protocol tried. */
export class PortMappingUnavailableError extends Error {
  readonly errors: readonly PortMappingError[];
  constructor(errors: readonly PortMappingError[]) {
    super(`no port mapping: ${errors.map((e) => e.message).join('; ') || 'no protocol enabled'}`);
    this.name = 'PortMappingUnavailableError';
    this.errors = errors;
  }
}
