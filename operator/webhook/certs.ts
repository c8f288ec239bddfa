/**
 * The webhook's CA and serving certificate. Generated with @peculiar/x509 over Node's own
 * WebCrypto: ECDSA P-256 keys are made natively in milliseconds (node-forge would mean RSA in pure
 * JavaScript), the library is typed, maintained and has no native code. Checked with
 * node:crypto's X509Certificate, which can parse but not issue.
 */
// @peculiar/x509 resolves its ASN.1 schemas through tsyringe, which needs the Reflect metadata
// polyfill loaded before it: a side-effect import, here where the library is used.
import 'reflect-metadata';
import { createPrivateKey, X509Certificate as NodeX509, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
/** A CA that outlives many serving certificates, so rotating one seldom touches caBundle. */
export const CA_VALIDITY_DAYS = 3650;
export const CERT_VALIDITY_DAYS = 365;
/** Re-issue when fewer days than this remain. */
export const RENEW_BEFORE_DAYS = 30;

export interface CertBundle {
  /** PEM: the CA that signed tls.crt, then (during a rotation) the previous CA. */
  caPem: string;
  certPem: string;
  keyPem: string;
}

const crypto = webcrypto;
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

function serial(): string {
  // Positive: the top bit clear.
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString('hex');
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/** A new CA and a serving certificate for `hosts` (DNS names and IP addresses). */
export async function issueCertificates(hosts: readonly string[], now = new Date()): Promise<CertBundle> {
  const caKeys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: `CN=peertunnel-webhook-ca-${now.getTime()}`,
      notBefore: new Date(now.getTime() - 5 * 60_000),
      notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS),
      signingAlgorithm: ALG,
      keys: caKeys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const leafKeys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serial(),
      subject: `CN=${hosts[0] ?? 'peertunnel-webhook'}`,
      issuer: ca.subject,
      notBefore: new Date(now.getTime() - 5 * 60_000),
      notAfter: new Date(now.getTime() + CERT_VALIDITY_DAYS * DAY_MS),
      signingAlgorithm: ALG,
      publicKey: leafKeys.publicKey,
      signingKey: caKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(
          hosts.map((h) => ({ type: isIP(h) === 0 ? ('dns' as const) : ('ip' as const), value: h })),
        ),
        await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return {
    caPem: ca.toString('pem'),
    certPem: leaf.toString('pem'),
    keyPem: await pkcs8Pem(leafKeys.privateKey),
  };
}

/**
 * Why a bundle cannot serve `hosts` any more (unparsable, key mismatch, a host not covered,
 * expiring, not signed by the first CA), or undefined when it is good.
 */
export function bundleProblem(b: CertBundle, hosts: readonly string[], now = new Date()): string | undefined {
  try {
    const cert = new NodeX509(b.certPem);
    const ca = new NodeX509(b.caPem);
    if (!cert.checkPrivateKey(createPrivateKey(b.keyPem))) return 'the key does not match the certificate';
    if (!cert.verify(ca.publicKey)) return 'the certificate is not signed by the CA';
    for (const h of hosts) {
      const ok = isIP(h) === 0 ? cert.checkHost(h) !== undefined : cert.checkIP(h) !== undefined;
      if (!ok) return `the certificate does not cover ${h}`;
    }
    const left = new Date(cert.validTo).getTime() - now.getTime();
    if (left < RENEW_BEFORE_DAYS * DAY_MS) return 'the certificate expires soon';
    return undefined;
  } catch (err) {
    return `unreadable: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** The first certificate of a PEM bundle, for keeping the previous CA during a rotation. */
export function firstPem(pem: string): string {
  const m = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/.exec(pem);
  return m === null ? '' : m[0].endsWith('\n') ? m[0] : `${m[0]}\n`;
}

/** Whether the first CA of a PEM bundle parses and is still valid (worth keeping in caBundle). */
export function caStillValid(pem: string, now = new Date()): boolean {
  try {
    return new Date(new NodeX509(firstPem(pem)).validTo).getTime() > now.getTime();
  } catch {
    return false;
  }
}
