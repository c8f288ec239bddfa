import { describe, expect, it } from '@jest/globals';
import { parseConfig, parseConfigText } from '../../../../sidecar/config/config.js';

/** A valid Ed25519 peer ID. */
const PEER = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA';

const key = { swarmKey: { file: '/etc/peertunnel/swarm.key' } };

function errorOf(fn: () => unknown): { name: string; field: string; message: string } {
  try {
    fn();
  } catch (err) {
    return err as { name: string; field: string; message: string };
  }
  throw new Error('expected an error');
}

describe('node config', () => {
  it('applies defaults', () => {
    const cfg = parseConfig({
      ...key,
      expose: [{ name: 'db', port: 5432 }],
      forward: [{ name: 'api', localPort: 8080 }],
    });
    expect(cfg.role).toBe('sidecar');
    expect(cfg.expose[0]).toEqual({ name: 'db', port: 5432, host: '127.0.0.1', idleTimeoutSeconds: 0 });
    expect(cfg.forward[0]).toEqual({ name: 'api', localPort: 8080, bind: '127.0.0.1' });
    expect(cfg.dht.protocol).toBe('/peertunnel/kad/1.0.0');
    expect(cfg.admin.listen).toBe('127.0.0.1:9090');
    expect(cfg.nat).toEqual({ upnp: false, natPmp: false, holePunch: true, relayReservations: 2 });
    expect(cfg.inbound).toEqual({
      nonceTimeoutMs: 3_000,
      pendingPerAddress: 32,
      newPerAddressPerSecond: 100,
    });
    expect(parseConfig({ ...key, inbound: { pendingPerAddress: 4 } }).inbound).toEqual({
      nonceTimeoutMs: 3_000,
      pendingPerAddress: 4,
      newPerAddressPerSecond: 100,
    });
  });

  it('takes a number of relay reservations from 0 to 8', () => {
    expect(parseConfig({ ...key, nat: { relayReservations: 0 } }).nat.relayReservations).toBe(0);
    expect(parseConfig({ ...key, nat: { relayReservations: 8 } }).nat).toEqual({
      upnp: false,
      natPmp: false,
      holePunch: true,
      relayReservations: 8,
    });
  });

  it.each([
    ['missing key', {}, 'swarmKey'],
    ['both key sources', { swarmKey: { file: 'a', env: 'B' } }, 'swarmKey'],
    ['port 0', { ...key, expose: [{ name: 'db', port: 0 }] }, 'expose[0].port'],
    ['port 70000', { ...key, forward: [{ name: 'db', localPort: 70000 }] }, 'forward[0].localPort'],
    ['port not a number', { ...key, expose: [{ name: 'db', port: '5432' }] }, 'expose[0].port'],
    [
      'duplicate expose',
      {
        ...key,
        expose: [
          { name: 'db', port: 1 },
          { name: 'db', port: 2 },
        ],
      },
      'expose[1].name',
    ],
    [
      'duplicate local port',
      {
        ...key,
        forward: [
          { name: 'a', localPort: 1 },
          { name: 'b', localPort: 1 },
        ],
      },
      'forward[1].localPort',
    ],
    ['unknown field', { ...key, expose: [{ name: 'db', port: 1, hots: 'x' }] }, 'expose[0].hots'],
    ['unknown top-level field', { ...key, forwards: [] }, 'forwards'],
    ['bad name', { ...key, expose: [{ name: 'Orders_DB', port: 1 }] }, 'expose[0].name'],
    ['bad role', { ...key, role: 'server' }, 'role'],
    ['too many relay reservations', { ...key, nat: { relayReservations: 9 } }, 'nat.relayReservations'],
    ['fractional relay reservations', { ...key, nat: { relayReservations: 1.5 } }, 'nat.relayReservations'],
    ['bad bootstrap', { ...key, bootstrap: ['/ip4/1.2.3.4/tcp/4001'] }, 'bootstrap[0]'],
    [
      'a relayed bootstrap peer with a bad target',
      { ...key, bootstrap: [`/ip4/1.2.3.4/tcp/4001/p2p/${PEER}/p2p-circuit/p2p/12D3KooWnot`] },
      'bootstrap[0]',
    ],
    [
      'a relayed bootstrap peer without its target',
      { ...key, bootstrap: [`/ip4/1.2.3.4/tcp/4001/p2p/${PEER}/p2p-circuit`] },
      'bootstrap[0]',
    ],
    ['bad range', { ...key, publicRanges: ['10.0.0.0/33'] }, 'publicRanges[0]'],
    ['bad admin', { ...key, admin: { listen: 'localhost' } }, 'admin.listen'],
    ['a zero pending cap', { ...key, inbound: { pendingPerAddress: 0 } }, 'inbound.pendingPerAddress'],
    ['a huge nonce timeout', { ...key, inbound: { nonceTimeoutMs: 600_000 } }, 'inbound.nonceTimeoutMs'],
    [
      'a string rate',
      { ...key, inbound: { newPerAddressPerSecond: '10' } },
      'inbound.newPerAddressPerSecond',
    ],
    ['an unknown inbound field', { ...key, inbound: { perAddress: 1 } }, 'inbound.perAddress'],
  ])('rejects %s naming the field', (_what, raw, field) => {
    const err = errorOf(() => parseConfig(raw));
    expect(err.name).toBe('ConfigError');
    expect(err.field).toBe(field);
    expect(err.message.split('\n')).toHaveLength(1);
  });

  it('takes a bootstrap peer reached through a relay', () => {
    const through = `/ip4/1.2.3.4/tcp/4001/p2p/${PEER}/p2p-circuit/p2p/${PEER}`;
    expect(parseConfig({ ...key, bootstrap: [through] }).bootstrap).toEqual([through]);
  });

  it('reads YAML and JSON alike', async () => {
    const yaml = await parseConfigText('swarmKey: {env: K}\nexpose:\n  - {name: web, port: 80}\n', 'x.yaml');
    const json = await parseConfigText(
      JSON.stringify({ swarmKey: { env: 'K' }, expose: [{ name: 'web', port: 80 }] }),
      'x.json',
    );
    expect(yaml).toEqual(json);
  });

  it('names a file that is not YAML', async () => {
    const err = await parseConfigText('a: [', 'bad.yaml').catch((e: unknown) => e);
    expect((err as Error).name).toBe('ConfigError');
  });
});
