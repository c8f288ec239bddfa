/** Named errors of the node. Tests check `name`, never message text. */

/** A config that cannot run; `field` names where it is wrong. The message is one line. */
export class ConfigError extends Error {
  readonly field: string;
  constructor(field: string, reason: string) {
    super(`invalid config: ${field}: ${reason}`);
    this.name = 'ConfigError';
    this.field = field;
  }
}

/** A swarm key that is missing or not in the kubo/go-libp2p swarm.key format. */
export class SwarmKeyError extends Error {
  constructor(reason: string) {
    super(`invalid swarm key: ${reason}`);
    this.name = 'SwarmKeyError';
  }
}

/** No provider of a forwarded service could be reached. */
export class NoProviderError extends Error {
  readonly service: string;
  constructor(service: string, detail: string) {
    super(`no reachable provider for "${service}": ${detail}`);
    this.name = 'NoProviderError';
    this.service = service;
  }
}
