/** The operator bench's reading of the webhook histogram: buckets summed over labels, diffed, interpolated. */
import { expect, it } from '@jest/globals';
import { histogramBuckets, histogramQuantile } from '../../bench/operator.js';

const scrape = (injected: number[], skipped: number[]) =>
  ['0.001', '0.0025', '+Inf']
    .flatMap((le, i) => [
      `x_bucket{le="${le}",result="injected"} ${injected[i]}`,
      `x_bucket{result="skipped",le="${le}"} ${skipped[i]}`,
    ])
    .join('\n');

it('sums buckets over labels, whatever the label order', () => {
  expect(histogramBuckets(scrape([2, 8, 10], [1, 1, 1]), 'x')).toEqual(
    new Map([
      [0.001, 3],
      [0.0025, 9],
      [Number.POSITIVE_INFINITY, 11],
    ]),
  );
});

it('interpolates quantiles of the observations between two scrapes, as histogram_quantile', () => {
  const before = histogramBuckets(scrape([1, 1, 1], [0, 0, 0]), 'x');
  const after = histogramBuckets(scrape([3, 9, 11], [0, 0, 0]), 'x');
  // 10 new observations: 2 below 1 ms, 6 in (1, 2.5] ms, 2 above.
  expect(histogramQuantile(before, after, 0.1)).toBeCloseTo(0.0005);
  expect(histogramQuantile(before, after, 0.5)).toBeCloseTo(0.00175);
  // In the +Inf bucket: the highest finite bound.
  expect(histogramQuantile(before, after, 0.99)).toBeCloseTo(0.0025);
  expect(histogramQuantile(after, after, 0.5)).toBeNaN();
});
