/**
 * This node's own credential: read from its file at start, looked at again every poll, and sent
 * again to connected peers when it changes (a renewal). A credential for another peer or network
 * is refused with one line naming the file; a bad renewal is logged and the last good one kept.
 */
import { readFile } from 'node:fs/promises';
import {
  CredentialError,
  type DecodedCredential,
  decodeCredential,
  MAX_CREDENTIAL_BYTES,
} from '../../contracts/credential.js';
import type { SidecarMetrics } from '../admin/metrics.js';
import { ConfigError } from '../node/errors.js';
import type { Logger } from '../node/logger.js';
import { FilePoll } from './file-poll.js';

export interface OwnCredentialInit {
  file: string;
  peer: string;
  network: string;
  logger: Logger;
  metrics: SidecarMetrics;
  pollMs: number;
  /** A new credential was read (not the first): send it to connected peers. */
  onRenewed(): void;
}

const FIELD = 'trust.credential.file';

export class OwnCredential {
  private current?: DecodedCredential;
  private poll?: FilePoll;

  private constructor(private readonly init: OwnCredentialInit) {}

  static async load(init: OwnCredentialInit): Promise<OwnCredential> {
    const own = new OwnCredential(init);
    let text: string | undefined;
    try {
      text = await readFile(init.file, { encoding: 'utf8', flag: 'r' });
    } catch (err) {
      // Not there yet (an issuer writes it later): the node runs without one and keeps looking.
      init.logger.warn(
        {
          event: 'credential_missing',
          file: init.file,
          code: (err as NodeJS.ErrnoException).code ?? 'error',
        },
        'no credential yet: peers that require one refuse this node until it appears',
      );
    }
    if (text !== undefined) {
      if (text.length > MAX_CREDENTIAL_BYTES * 2)
        throw new ConfigError(FIELD, `${init.file} is larger than a credential may be`);
      const problem = own.accept(text);
      if (problem !== undefined) throw new ConfigError(FIELD, `${init.file}: ${problem}`);
    }
    own.poll = new FilePoll({
      file: init.file,
      intervalMs: init.pollMs,
      maxBytes: MAX_CREDENTIAL_BYTES * 2,
      onChange: (t) => {
        const problem = own.accept(t);
        if (problem !== undefined)
          init.logger.warn(
            { event: 'credential_reload_failed', file: init.file, problem },
            'new credential file refused: the last good credential stays',
          );
        else init.onRenewed();
      },
      onError: (problem) =>
        init.logger.warn(
          { event: 'credential_reload_failed', file: init.file, problem },
          'credential file unreadable',
        ),
    });
    own.poll.start(text);
    return own;
  }

  stop(): void {
    this.poll?.stop();
  }

  /** Looks at the file now (a renewer has just written it) rather than at the next poll. */
  async reload(): Promise<void> {
    await this.poll?.pollNow();
  }

  get credential(): DecodedCredential | undefined {
    return this.current;
  }

  /** What goes over the exchange: the text, or nothing. */
  bytes(): Uint8Array {
    return this.current === undefined ? new Uint8Array(0) : Buffer.from(this.current.text, 'latin1');
  }

  /** Takes the text as the current credential; returns why not, in one line. */
  private accept(text: string): string | undefined {
    let cred: DecodedCredential;
    try {
      cred = decodeCredential(text);
    } catch (err) {
      return err instanceof CredentialError ? err.message : String(err);
    }
    const { claims } = cred;
    if (claims.peer !== this.init.peer)
      return `the credential is for peer ${claims.peer}, this node is ${this.init.peer}`;
    if (claims.network !== this.init.network)
      return `the credential is for network "${claims.network}", this node is in "${this.init.network}"`;
    const renewed = this.current !== undefined;
    this.current = cred;
    this.init.metrics.credentialExpiry.set(claims.expires);
    const expired = Date.now() / 1000 >= claims.expires;
    this.init.logger[expired ? 'warn' : 'info'](
      {
        event: renewed ? 'credential_renewed' : 'credential_loaded',
        cluster: claims.cluster,
        namespace: claims.namespace,
        serviceAccount: claims.serviceAccount,
        expose: claims.expose,
        expires: new Date(claims.expires * 1000).toISOString(),
        expired,
      },
      expired ? 'own credential has expired: peers refuse it' : 'own credential read',
    );
    return undefined;
  }
}
