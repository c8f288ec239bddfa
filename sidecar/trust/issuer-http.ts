/**
 * One POST to the operator's HTTPS server (the credential issuer and the trusted-cluster answer):
 * plain node:https with the operator's CA, a timeout, a bounded answer. A refusal's JSON body
 * (`{reason, message}`) becomes an IssuerError with that reason.
 */
import { request } from 'node:https';
import { CREDENTIAL_REQUEST_TIMEOUT_MS } from '../../contracts/credential-request.js';
import type { IssuerConfig } from '../config/trust-config.js';

export class IssuerError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'IssuerError';
  }
}

/** POSTs `body` to `url` and returns the answer's text; anything but 200 throws IssuerError. */
export async function postToIssuer(
  issuer: Pick<IssuerConfig, 'ca'>,
  url: string,
  body: string,
  maxBytes: number,
): Promise<string> {
  const { status, text } = await post(issuer, url, body, maxBytes);
  if (status === 200) return text;
  let reason = `http_${status}`;
  let message = text.slice(0, 200);
  try {
    const r = JSON.parse(text) as { reason?: unknown; message?: unknown };
    if (typeof r.reason === 'string') reason = r.reason;
    if (typeof r.message === 'string') message = r.message;
  } catch {
    // Not our answer (a proxy's page): the status says enough.
  }
  throw new IssuerError(reason, message);
}

function post(
  issuer: Pick<IssuerConfig, 'ca'>,
  url: string,
  body: string,
  maxBytes: number,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        ...(issuer.ca === undefined ? {} : { ca: issuer.ca }),
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        signal: AbortSignal.timeout(CREDENTIAL_REQUEST_TIMEOUT_MS),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
          if (text.length > maxBytes) res.destroy(new Error('answer too large'));
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
