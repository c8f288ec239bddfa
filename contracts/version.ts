/**
 * The version of PeerTunnel: the sidecar's /status and build_info metric and its libp2p identify
 * agent report it. package.json and the chart's appVersion must say the same (a unit test checks).
 */
export const VERSION = '0.1.0';
