// @ts-check
// The worker's hot-path counters, reported in prom-client's JSON shape.
import test from 'ava';
import { DURATION_BUCKETS, WorkerMetrics } from '../dist/worker/metrics.js';

test('counts by status code (0 is "aborted") and protocol, and fills the duration histogram cumulatively', (t) => {
  const m = new WorkerMetrics();
  m.record(200, 0.0005, 'http/1.1');
  m.record(200, 0.02, 'h2');
  m.record(404, 0.002, 'http/1.1');
  m.record(0, 30, 'http/1.1');
  m.record(999, 0.001, 'http/1.1');
  const [requests, duration] = m.snapshot();
  t.deepEqual(requests?.values, [
    { labels: { code: 'aborted', protocol: 'http/1.1' }, value: 1 },
    { labels: { code: '200', protocol: 'http/1.1' }, value: 1 },
    { labels: { code: '404', protocol: 'http/1.1' }, value: 1 },
    { labels: { code: '999', protocol: 'http/1.1' }, value: 1 },
    { labels: { code: '200', protocol: 'h2' }, value: 1 },
  ]);
  const bucket = (/** @type {number | string} */ le) => duration?.values.find((v) => v.labels.le === le)?.value;
  t.is(bucket(0.001), 2, '0.5 ms and exactly 1 ms fall in le=0.001');
  t.is(bucket(0.005), 3);
  t.is(bucket(0.025), 4);
  t.is(bucket(DURATION_BUCKETS.at(-1) ?? 0), 4, '30 s is above every bound');
  t.is(bucket('+Inf'), 5);
  t.is(duration?.values.find((v) => v.metricName === 'baton_http_request_duration_seconds_count')?.value, 5);
  t.is(Math.round((duration?.values.find((v) => v.metricName === 'baton_http_request_duration_seconds_sum')?.value ?? 0) * 1e4), Math.round(30.0235 * 1e4));
});
