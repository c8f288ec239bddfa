import { describe, expect, it } from '@jest/globals';
import { generateSwarmKey, parseSwarmKey, readSwarmKey } from '../../../../sidecar/config/swarm-key.js';

function nameOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as Error).name;
  }
  return undefined;
}

describe('swarm key', () => {
  it('round-trips the kubo format and normalises whitespace and case', () => {
    const key = generateSwarmKey();
    const canonical = parseSwarmKey(key);
    const messy = `\r\n  ${key.replace(/\n/g, '\r\n').toUpperCase().replace('/KEY/SWARM/PSK/1.0.0/', '/key/swarm/psk/1.0.0/').replace('/BASE16/', '/base16/')}  \n`;
    expect(Buffer.from(parseSwarmKey(messy)).equals(Buffer.from(canonical))).toBe(true);
  });

  it.each([
    ['empty', ''],
    ['wrong header', `/key/swarm/psk/2.0.0/\n/base16/\n${'a'.repeat(64)}`],
    ['base64', `/key/swarm/psk/1.0.0/\n/base64/\n${'a'.repeat(44)}`],
    ['short key', `/key/swarm/psk/1.0.0/\n/base16/\n${'a'.repeat(62)}`],
  ])('rejects %s with SwarmKeyError', (_what, text) => {
    expect(nameOf(() => parseSwarmKey(text))).toBe('SwarmKeyError');
  });

  it('names the empty env var', async () => {
    await expect(readSwarmKey({ env: 'NOPE' }, {})).rejects.toMatchObject({ name: 'SwarmKeyError' });
  });

  it('deletes the env var from process.env once read (standalone use)', async () => {
    const key = generateSwarmKey();
    process.env.PT_TEST_SWARM_KEY = key;
    const bytes = await readSwarmKey({ env: 'PT_TEST_SWARM_KEY' }, process.env);
    expect(new TextDecoder().decode(bytes)).toBe(key.trim());
    expect(process.env.PT_TEST_SWARM_KEY).toBeUndefined();
    expect(Object.values(process.env).some((v) => v?.includes(key.trim().split('\n')[2] ?? '-'))).toBe(false);
  });
});
