/**
 * The Node/V8 flags every PeerTunnel process runs with, in one place: the build writes them into
 * the bundle's first line (`#!/usr/bin/env -S node <flags>`, the image's entrypoint runs the bundle
 * through it), so the image, the pods the chart and operator create from it, the lab kubelet and
 * the bench all run the same flags.
 *
 * --max-semi-space-size (MB): the young generation. Node's default lets it grow to 16 MB per
 * semi-space (tens of MB of RSS under load). Measured with the bench at 1, 2, 4 and 8 MB
 * (`BENCH_NODE_FLAGS=--max-semi-space-size=N`; CPU per MiB, per 1,000 round trips and per 1,000
 * connections, RSS idle and with open connections): RSS grows by a few MB from 1 to 8; 1 MB was
 * earlier measured to cost 25-30% more CPU per small message and per new connection; between 2
 * and 8 the CPU differences were within the noise of a shared 2-core machine. 4 stays.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

/** The bundled CLI, relative to the repository (or image) root; written by `npm run build`. */
export const BUNDLE_PATH = 'dist/bundle/peertunnel.mjs';

/** The numeric user the image runs as (Dockerfile USER; the Dockerfile test checks it). */
export const IMAGE_UID = 65532;
