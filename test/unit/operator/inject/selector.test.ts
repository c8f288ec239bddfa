import { describe, expect, it } from '@jest/globals';
import type { LabelSelector } from '../../../../crds/schema.js';
import { matchesSelector } from '../../../../operator/inject/selector.js';

const pod = { app: 'orders', track: 'stable', 'example.com/team': 'shop' };

describe('matchesSelector', () => {
  it.each<[string, LabelSelector | undefined, Record<string, string> | undefined, boolean]>([
    ['absent selector selects nothing', undefined, pod, false],
    ['empty selector selects everything', {}, pod, true],
    ['empty selector selects a pod without labels', {}, undefined, true],
    ['matchLabels equal', { matchLabels: { app: 'orders' } }, pod, true],
    ['matchLabels other value', { matchLabels: { app: 'web' } }, pod, false],
    ['matchLabels missing key', { matchLabels: { tier: 'db' } }, pod, false],
    ['matchLabels all must hold', { matchLabels: { app: 'orders', track: 'canary' } }, pod, false],
    ['matchLabels empty value needs the label', { matchLabels: { tier: '' } }, pod, false],
    ['matchLabels empty value present', { matchLabels: { tier: '' } }, { tier: '' }, true],
    [
      'In holds',
      { matchExpressions: [{ key: 'app', operator: 'In', values: ['web', 'orders'] }] },
      pod,
      true,
    ],
    ['In other value', { matchExpressions: [{ key: 'app', operator: 'In', values: ['web'] }] }, pod, false],
    ['In absent label', { matchExpressions: [{ key: 'tier', operator: 'In', values: ['db'] }] }, pod, false],
    [
      'NotIn holds',
      { matchExpressions: [{ key: 'track', operator: 'NotIn', values: ['canary'] }] },
      pod,
      true,
    ],
    [
      'NotIn listed value',
      { matchExpressions: [{ key: 'track', operator: 'NotIn', values: ['stable'] }] },
      pod,
      false,
    ],
    [
      'NotIn absent label holds',
      { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }] },
      pod,
      true,
    ],
    ['Exists holds', { matchExpressions: [{ key: 'example.com/team', operator: 'Exists' }] }, pod, true],
    ['Exists absent', { matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, pod, false],
    ['DoesNotExist holds', { matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, pod, true],
    ['DoesNotExist present', { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, pod, false],
    ['In without values selects nothing', { matchExpressions: [{ key: 'app', operator: 'In' }] }, pod, false],
    [
      'Exists with values selects nothing',
      { matchExpressions: [{ key: 'app', operator: 'Exists', values: ['orders'] }] },
      pod,
      false,
    ],
    [
      'labels and expressions all hold',
      {
        matchLabels: { app: 'orders' },
        matchExpressions: [
          { key: 'track', operator: 'In', values: ['stable'] },
          { key: 'debug', operator: 'DoesNotExist' },
        ],
      },
      pod,
      true,
    ],
    [
      'one failing expression fails the selector',
      {
        matchLabels: { app: 'orders' },
        matchExpressions: [
          { key: 'track', operator: 'In', values: ['stable'] },
          { key: 'app', operator: 'DoesNotExist' },
        ],
      },
      pod,
      false,
    ],
  ])('%s', (_name, selector, labels, want) => {
    expect(matchesSelector(selector, labels)).toBe(want);
  });

  it('does not match inherited properties', () => {
    expect(matchesSelector({ matchExpressions: [{ key: 'toString', operator: 'Exists' }] }, {})).toBe(false);
    expect(
      matchesSelector({ matchExpressions: [{ key: 'constructor', operator: 'DoesNotExist' }] }, {}),
    ).toBe(true);
  });

  it('refuses an operator the schema does not allow', () => {
    const bad = {
      matchExpressions: [{ key: 'app', operator: 'Equals', values: ['orders'] }],
    } as unknown as LabelSelector;
    expect(matchesSelector(bad, pod)).toBe(false);
  });
});
