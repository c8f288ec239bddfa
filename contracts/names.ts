/**
 * The spellings of names both sides agree on: service names (node config, CRDs, credentials) and
 * the Kubernetes-style names a workload credential binds (cluster, namespace, ServiceAccount).
 */

/** A service name: a DNS label, because it becomes part of a libp2p protocol string and a DHT key. */
export const SERVICE_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A cluster name or a namespace: a DNS label. */
export const DNS_LABEL_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A ServiceAccount name: a DNS subdomain. */
export const DNS_SUBDOMAIN_PATTERN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** A network name: a DNS subdomain that may also hold "/" (the operator's "<namespace>/<name>"). */
export const NETWORK_NAME_PATTERN = /^[a-z0-9]([-a-z0-9./]{0,251}[a-z0-9])?$/;
/** A libp2p peer ID as text (base58btc, as libp2p prints it). */
export const PEER_ID_PATTERN = /^[1-9A-HJ-NP-Za-km-z]{32,128}$/;
