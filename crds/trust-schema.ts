/**
 * The credential parts of both CRDs (docs/architecture.md, Workload credentials): a PeerNetwork's
 * `spec.trust` and `status.trust`, a PeerTunnel expose's `allowFrom` and the tunnel's
 * `status.trust`. Same rules as `schema.ts`: limits from `contracts/limits.ts`, names as the node
 * config spells them, so what the API server accepts renders a node config the sidecar accepts.
 */
import { CREDENTIAL_REFUSALS } from '../contracts/credential.js';
import { LIMITS } from '../contracts/limits.js';
import { SERVICE_NAME_PATTERN } from '../contracts/names.js';
import { arr, enumOf, int, obj, opt, req, str } from './builder.js';

const DNS_LABEL = SERVICE_NAME_PATTERN.source;
const DNS_LABEL_BODY = DNS_LABEL.slice(1, -1);
const SA_NAME_BODY = '[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?';
const NETWORK_NAME = '^[a-z0-9]([-a-z0-9./]{0,251}[a-z0-9])?$';
const PUBLIC_KEY = '^ed25519:[A-Za-z0-9_-]{43}$';

/** Credential lifetime bounds: seconds let a test see renewals; a day is the most a key leak buys. */
export const CREDENTIAL_TTL = { min: 10, max: 86_400, default: 3_600 } as const;
/** Refusals named in a PeerTunnel's status (the count says how many there were). */
export const MAX_STATUS_REFUSALS = 16;

const clusterName = (description: string) =>
  str({ description: `${description} A DNS label.`, maxLength: 63, minLength: 1, pattern: DNS_LABEL });

export const networkTrustSpec = obj(
  {
    network: opt(
      str({
        description:
          'The network name credentials carry; every cluster of the network must use the same one. Default: <namespace>/<name> of this PeerNetwork.',
        maxLength: 253,
        minLength: 1,
        pattern: NETWORK_NAME,
      }),
    ),
    clusters: opt(
      arr(
        obj(
          {
            name: req(
              clusterName('The name the other cluster gives itself (its operator flag --cluster-name).'),
            ),
            publicKey: req(
              str({
                description:
                  "That cluster's public key line, ed25519:<43 base64url characters>: its PeerNetwork's status.trust.publicKey.",
                maxLength: 51,
                pattern: PUBLIC_KEY,
              }),
            ),
          },
          { description: 'Another cluster whose credentials members of this network accept.' },
        ),
        {
          description:
            "Other clusters whose credentials are accepted; this cluster's own key is always trusted. A name may appear twice while its key rotates.",
          maxItems: LIMITS.trustedClusters - 1,
          listType: 'atomic',
        },
      ),
    ),
    uncredentialed: opt(
      arr(str({ description: 'A service name.', maxLength: 63, minLength: 1, pattern: DNS_LABEL }), {
        description:
          "Service names any member may serve and reach without a credential (kubo's `ipfs p2p` cannot present one).",
        maxItems: LIMITS.uncredentialed,
        listType: 'set',
      }),
    ),
    credentialTTLSeconds: opt(
      int({
        description: `How long a credential the operator issues is valid; sidecars renew at half of it. From ${CREDENTIAL_TTL.min} to ${CREDENTIAL_TTL.max}.`,
        minimum: CREDENTIAL_TTL.min,
        maximum: CREDENTIAL_TTL.max,
        format: 'int32',
        default: CREDENTIAL_TTL.default,
      }),
    ),
  },
  {
    description:
      "Workload credentials: sidecars get a credential from this cluster's operator, serve a name only with a credential naming it, and serve streams only to credentialed members (narrowed by expose allowFrom). Absent: an open network.",
  },
);

export const networkTrustStatus = obj(
  {
    cluster: req(clusterName('This cluster’s name, as its credentials carry it.')),
    publicKey: req(
      str({
        description:
          "This cluster's public key line: paste it with the cluster name into the other clusters' spec.trust.clusters.",
        maxLength: 51,
        pattern: PUBLIC_KEY,
      }),
    ),
  },
  { description: 'This cluster as other clusters must trust it.' },
);

const nameOrAny = (what: string, body: string, maxLength: number) =>
  opt(
    str({
      description: `${what}, or "*" for any (the default).`,
      maxLength,
      minLength: 1,
      pattern: `^(\\*|${body})$`,
      default: '*',
    }),
  );

export const allowFrom = arr(
  obj(
    {
      cluster: nameOrAny('The cluster name', DNS_LABEL_BODY, 63),
      namespace: nameOrAny('The namespace', DNS_LABEL_BODY, 63),
      serviceAccount: nameOrAny('The ServiceAccount name', SA_NAME_BODY, 253),
    },
    { description: 'Workloads whose credential names this cluster, namespace and ServiceAccount.' },
  ),
  {
    description:
      'Who may reach this expose: streams from members whose credential matches no rule are refused (and listed in status.trust). Needs spec.trust on the PeerNetwork. Absent: every credentialed member.',
    maxItems: LIMITS.allowFrom,
    listType: 'atomic',
  },
);

const nullableName = (description: string) => opt(str({ description, maxLength: 253 }));

export const tunnelTrustStatus = obj(
  {
    refused: req(
      int({
        description: 'Refusals the ready sidecars report now (their newest ones, at most 32 each).',
        minimum: 0,
        maximum: 2147483647,
        format: 'int32',
      }),
    ),
    refusals: opt(
      arr(
        obj(
          {
            at: req(str({ description: 'When (RFC 3339).', maxLength: 64 })),
            pod: req(str({ description: 'The pod whose sidecar refused.', maxLength: 253 })),
            side: req(
              enumOf({
                description:
                  'expose: a stream not served; forward: a provider not used; exchange: a credential refused on arrival.',
                values: ['expose', 'forward', 'exchange'],
              }),
            ),
            service: nullableName('The service asked for or offered.'),
            reason: req(enumOf({ description: 'Why.', values: CREDENTIAL_REFUSALS })),
            peer: req(str({ description: 'The refused peer ID.', maxLength: 128 })),
            cluster: nullableName("The cluster the peer's credential named."),
            namespace: nullableName("The namespace the peer's credential named."),
            serviceAccount: nullableName("The ServiceAccount the peer's credential named."),
          },
          { description: 'One refusal a sidecar reported.' },
        ),
        {
          description: `The newest refusals, at most ${MAX_STATUS_REFUSALS}.`,
          maxItems: MAX_STATUS_REFUSALS,
          listType: 'atomic',
        },
      ),
    ),
  },
  { description: 'Credential refusals reported by the sidecars of this tunnel.' },
);
